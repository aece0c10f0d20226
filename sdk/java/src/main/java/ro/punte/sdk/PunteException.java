package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * A refusal, as Punte spells it everywhere (docs/contracts.md, "Rejection catalogue"): a code
 * such as {@code BAD_SIGNATURE}, with the catalogue's Romanian and English messages when the
 * network sent them. Thrown by the SDK for what it refuses itself (a delivery that does not
 * verify) and for what the network refuses (an HTTP error answer).
 */
public class PunteException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    private final String code;
    private final String messageRo;
    private final String messageEn;
    private final int status;

    public PunteException(String code, String messageRo, String messageEn, int status) {
        super(code + ": " + messageEn);
        this.code = code;
        this.messageRo = messageRo;
        this.messageEn = messageEn;
        this.status = status;
    }

    /** A refusal decided here, by the SDK (no HTTP status; the detail in both languages). */
    public PunteException(String code, String detail) {
        this(code, detail, detail, 0);
    }

    /** A refusal as it travels: {@code {"code", "message_ro", "message_en"}}. */
    public static PunteException fromReason(JsonNode reason, int status) {
        String code = reason.path("code").asText("UNKNOWN");
        String en = reason.path("message_en").asText(code);
        return new PunteException(code, reason.path("message_ro").asText(en), en, status);
    }

    /** The refusal code, e.g. {@code UNKNOWN_KEY}. */
    public String code() {
        return code;
    }

    public String messageRo() {
        return messageRo;
    }

    public String messageEn() {
        return messageEn;
    }

    /** The HTTP status of the answer that carried the refusal; 0 when the SDK refused. */
    public int status() {
        return status;
    }
}
