// ES module resolution through NODE_PATH, as AWS's Node.js 18+ runtimes do it: Node.js itself
// never reads NODE_PATH for `import`, so without this hook an .mjs handler could not import the
// SDK in /var/runtime/node_modules or a layer's /opt/nodejs/node_modules.
//
// Only a bare specifier ("@aws-sdk/client-s3", "mylib") that Node.js did not find is looked up
// again, from inside each NODE_PATH folder named node_modules, in order: Node.js's own
// resolver does the rest (package.json "exports" and "main", import conditions), so the result
// is what a node_modules folder beside the handler would have given.
import { delimiter, join } from 'node:path';
import { pathToFileURL } from 'node:url';

const folders = (process.env.NODE_PATH ?? '')
  .split(delimiter)
  .filter((folder) => folder.startsWith('/') && folder.endsWith('/node_modules'));

const isBare = (specifier) => !/^([./#]|[a-zA-Z][a-zA-Z0-9+.-]*:)/.test(specifier);

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== 'ERR_MODULE_NOT_FOUND' || !isBare(specifier)) throw error;
    for (const folder of folders) {
      // A parent module inside FOLDER makes Node.js look in FOLDER itself (its parent's
      // node_modules) for the package.
      const parentURL = pathToFileURL(join(folder, 'node-path.mjs')).href;
      try {
        return await nextResolve(specifier, { ...context, parentURL });
      } catch (again) {
        if (again?.code !== 'ERR_MODULE_NOT_FOUND') throw again;
      }
    }
    throw error;
  }
}
