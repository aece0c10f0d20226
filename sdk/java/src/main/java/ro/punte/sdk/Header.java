package ro.punte.sdk;

import java.nio.charset.StandardCharsets;

/** One Kafka record header (or HTTP {@code ce-*} header) as text; values travel as UTF-8. */
public record Header(String name, String value) {
    public byte[] valueBytes() {
        return value.getBytes(StandardCharsets.UTF_8);
    }
}
