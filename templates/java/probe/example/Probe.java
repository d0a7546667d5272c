package example;

import com.amazonaws.services.lambda.runtime.Context;
import java.io.IOException;
import java.io.InputStream;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;
import java.util.stream.Stream;

/**
 * Conformance probe for the java family, compiled on the host (javac --release 17) against the
 * aws-lambda-java-core jar the image carries. {@code example.Probe::handleRequest} echoes its
 * event; {@code describe} reports where it ran; {@code fail} throws, for Lambda's error shape.
 */
public class Probe {

    /** The conformance check's handler: the event, unchanged. */
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        return event;
    }

    /** The event and what the function can see of its runtime. */
    public Map<String, Object> describe(Map<String, Object> event, Context context)
            throws IOException {
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("event", event);
        out.put("arch", System.getProperty("os.arch"));
        out.put("javaVersion", Runtime.version().feature());
        out.put("requestId", context.getAwsRequestId());
        out.put("remainingMs", context.getRemainingTimeInMillis());
        out.put("functionName", context.getFunctionName());
        out.put("memoryMB", context.getMemoryLimitInMB());
        out.put("executionEnv", System.getenv("AWS_EXECUTION_ENV"));
        out.put("wrapperMarker", System.getenv("PROBE_WRAPPER_MARKER"));
        out.put("jvmArguments", ManagementFactory.getRuntimeMXBean().getInputArguments());
        out.put("classPath", System.getProperty("java.class.path"));
        String library = nativeLibrary();
        out.put("nativeLibrary", library);
        out.put("nativeLibraryMachine", library == null ? null : elfMachine(Paths.get(library)));
        return out;
    }

    /** Throws, so that the runtime reports Lambda's error shape. */
    public Map<String, Object> fail(Map<String, Object> event, Context context) {
        throw new ProbeFailure("the probe was asked to fail: " + event.get("reason"));
    }

    /** The runtime interface client's JNI library as this process mapped it, or null. */
    private static String nativeLibrary() throws IOException {
        try (Stream<String> maps = Files.lines(Paths.get("/proc/self/maps"))) {
            List<String> paths = maps.map(line -> line.substring(line.lastIndexOf(' ') + 1))
                    .filter(path -> path.contains("aws-lambda-jni"))
                    .distinct()
                    .collect(Collectors.toList());
            return paths.isEmpty() ? null : paths.get(0);
        }
    }

    /** The e_machine field of an ELF file: 62 is x86-64, 183 is AArch64. */
    private static int elfMachine(Path file) throws IOException {
        byte[] head = new byte[20];
        try (InputStream in = Files.newInputStream(file)) {
            if (in.readNBytes(head, 0, head.length) != head.length) {
                return -1;
            }
        }
        return (head[18] & 0xff) | (head[19] & 0xff) << 8;
    }
}
