// Loaded first by the bootstrap (node --import): installs the resolve hook of
// esm-node-path.mjs, so that `import` finds packages in NODE_PATH as `require` does.
import { register } from 'node:module';

register('./esm-node-path.mjs', import.meta.url);
