package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The network's answer to a message ({@code ro.punte.outcome.v1} data: {@code status}
 * accepted or rejected, {@code reason} with the code and messages, {@code case_id}, ...), as
 * the delivery topic and the HTTP gateway give it; or, over HTTP, {@code processing} when no
 * answer came within the wait.
 */
public final class Outcome {
    private final ObjectNode json;
    private final String location;

    public Outcome(ObjectNode json, String location) {
        this.json = json.deepCopy();
        this.location = location;
    }

    public static Outcome of(JsonNode data) {
        if (!(data instanceof ObjectNode object)) {
            throw new IllegalArgumentException("an outcome is a JSON object");
        }
        return new Outcome(object, null);
    }

    /** accepted, rejected, or processing (HTTP only: no answer yet; see {@link #location()}). */
    public String status() {
        return json.path("status").asText();
    }

    public boolean accepted() {
        return "accepted".equals(status());
    }

    public boolean rejected() {
        return "rejected".equals(status());
    }

    public boolean processing() {
        return "processing".equals(status());
    }

    /** The ce_id of the message answered. */
    public String subjectId() {
        return json.path("subject_id").asText(null);
    }

    public String caseId() {
        return json.path("case_id").asText(null);
    }

    /** The refusal code of a rejected outcome, else null. */
    public String reasonCode() {
        return json.path("reason").path("code").asText(null);
    }

    /** Where to poll for the answer of a message still being processed (HTTP 202). */
    public String location() {
        return location;
    }

    /** The outcome as JSON (a copy). */
    public ObjectNode json() {
        return json.deepCopy();
    }

    /** This outcome if accepted; a rejected one as a PunteException with its code and messages. */
    public Outcome orThrow() {
        if (rejected()) {
            throw PunteException.fromReason(json.path("reason"), 422);
        }
        if (processing()) {
            throw new PunteException("NOT_YET", "no answer yet; poll " + location);
        }
        return this;
    }

    @Override
    public String toString() {
        return Json.compactString(json);
    }
}
