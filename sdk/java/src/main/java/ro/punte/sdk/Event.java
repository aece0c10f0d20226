package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Instant;
import java.time.format.DateTimeFormatter;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;

/**
 * A CloudEvent as Punte sends it over Kafka (binary content mode: attributes in {@code ce_*}
 * headers, {@code data} as the record value). The body bytes are fixed when the event is made
 * and never re-serialised: the bytes signed are the bytes sent. Immutable.
 */
public final class Event {
    public static final String SPECVERSION = "1.0";
    public static final String CONTENT_TYPE = "application/json";

    private final String id;
    private final String source;
    private final String type;
    private final String time;
    private final String subject;
    private final byte[] body;
    private final ObjectNode data;
    private final Map<String, String> extensions;

    private Event(String id, String source, String type, String time, String subject, byte[] body, ObjectNode data,
                  Map<String, String> extensions) {
        this.id = id;
        this.source = source;
        this.type = type;
        this.time = time;
        this.subject = subject;
        this.body = body;
        this.data = data;
        this.extensions = Collections.unmodifiableMap(new LinkedHashMap<>(extensions));
    }

    /**
     * A new event: a fresh UUID for ce_id, now (UTC, RFC 3339, microseconds) for ce_time, and
     * {@code data} as compact UTF-8 JSON.
     */
    public static Event create(String type, String source, ObjectNode data, String subject) {
        return create(UUID.randomUUID().toString(), type, source, data, subject);
    }

    /** As {@link #create(String, String, ObjectNode, String)} with a chosen ce_id (a sealed report's). */
    public static Event create(String id, String type, String source, ObjectNode data, String subject) {
        return of(id, source, type, now(), subject, data);
    }

    /** An event with every attribute given; the body is {@code data} as compact JSON. */
    public static Event of(String id, String source, String type, String time, String subject, ObjectNode data) {
        ObjectNode copy = data.deepCopy();
        return new Event(id, source, type, time, subject, Json.compact(copy), copy, Map.of());
    }

    /** An event over body bytes as they are (a JSON object; IllegalArgumentException if not). */
    public static Event ofBody(String id, String source, String type, String time, String subject, byte[] body) {
        JsonNode parsed = Json.parse(body);
        if (!(parsed instanceof ObjectNode object)) {
            throw new IllegalArgumentException("the body is not a JSON object");
        }
        return new Event(id, source, type, time, subject, body.clone(), object, Map.of());
    }

    /** The current time as Punte writes ce_time: UTC, RFC 3339, e.g. 2026-03-10T07:30:01.250000Z. */
    public static String now() {
        Instant instant = Instant.now().truncatedTo(ChronoUnit.MICROS);
        return DateTimeFormatter.ofPattern("yyyy-MM-dd'T'HH:mm:ss.SSSSSS'Z'")
                .withZone(java.time.ZoneOffset.UTC).format(instant);
    }

    /** The same event with these extension attributes set (keyid, signature, sigversion, ...). */
    public Event withExtensions(Map<String, String> changes) {
        Map<String, String> merged = new LinkedHashMap<>(extensions);
        merged.putAll(changes);
        merged.values().removeIf(v -> v == null);
        return new Event(id, source, type, time, subject, body, data, merged);
    }

    public Event withoutExtension(String name) {
        Map<String, String> kept = new LinkedHashMap<>(extensions);
        kept.remove(name);
        return new Event(id, source, type, time, subject, body, data, kept);
    }

    public String id() {
        return id;
    }

    public String source() {
        return source;
    }

    public String type() {
        return type;
    }

    public String time() {
        return time;
    }

    /** ce_subject, or null. */
    public String subject() {
        return subject;
    }

    /** The body: exactly the bytes signed and sent (a copy). */
    public byte[] body() {
        return body.clone();
    }

    /** The decoded data (a copy). */
    public ObjectNode data() {
        return data.deepCopy();
    }

    /** Extension attributes without their {@code ce_} prefix: keyid, signature, sigversion. */
    public Map<String, String> extensions() {
        return extensions;
    }

    public String keyId() {
        return extensions.get("keyid");
    }

    public String signature() {
        return extensions.get("signature");
    }

    /** The Kafka record headers, in the network's order. */
    public List<Header> headers() {
        List<Header> out = new ArrayList<>(List.of(
                new Header("ce_specversion", SPECVERSION),
                new Header("ce_id", id),
                new Header("ce_source", source),
                new Header("ce_type", type),
                new Header("ce_time", time),
                new Header("content-type", CONTENT_TYPE)));
        if (subject != null && !subject.isEmpty()) {
            out.add(new Header("ce_subject", subject));
        }
        extensions.forEach((k, v) -> out.add(new Header("ce_" + k, v)));
        return out;
    }

    @Override
    public String toString() {
        return "Event{id=" + id + ", source=" + source + ", type=" + type + ", time=" + time
                + (subject == null ? "" : ", subject=" + subject) + ", extensions=" + extensions.keySet() + "}";
    }

    @Override
    public boolean equals(Object other) {
        return other instanceof Event e && id.equals(e.id) && source.equals(e.source) && type.equals(e.type)
                && time.equals(e.time) && java.util.Objects.equals(subject, e.subject) && Arrays.equals(body, e.body)
                && extensions.equals(e.extensions);
    }

    @Override
    public int hashCode() {
        return java.util.Objects.hash(id, source, type, time, subject, Arrays.hashCode(body));
    }
}
