package ro.punte.sdk;

/**
 * One record of an institution's delivery topic: the verified event, or the refusal of a
 * record that must not be trusted (its code: MALFORMED_ENVELOPE, MISSING_SIGNATURE,
 * UNKNOWN_KEY, BAD_SIGNATURE, MALFORMED_PAYLOAD).
 */
public record Delivery(String topic, int partition, long offset, String key, Event event, PunteException refusal) {
    public boolean verified() {
        return event != null;
    }

    /** The outcome this record carries (ro.punte.outcome.v1), or null. */
    public Outcome outcome() {
        return verified() && "ro.punte.outcome.v1".equals(event.type()) ? Outcome.of(event.data()) : null;
    }
}
