package example;

/** The exception {@link Probe#fail} throws; its class name is the errorType Lambda reports. */
public class ProbeFailure extends RuntimeException {
    private static final long serialVersionUID = 1L;

    public ProbeFailure(String message) {
        super(message);
    }
}
