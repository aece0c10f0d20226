package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.PublicKey;
import java.security.Signature;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Ed25519 public keys by key id, from a JWKS of RFC 8037 OKP keys: the network's keys
 * ({@code GET /.well-known/punte-network-keys.json} on any of its services; the current key
 * first, earlier ones still trusted during a rotation). {@link #decode} checks a delivered
 * record as the network checks what it receives, and refuses with the network's codes.
 */
public final class VerificationKeys {
    /** The path every Punte service serves the network's keys at. */
    public static final String WELL_KNOWN_PATH = "/.well-known/punte-network-keys.json";
    private static final List<String> REQUIRED = List.of("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time");

    private final Map<String, PublicKey> byId;

    private VerificationKeys(Map<String, PublicKey> byId) {
        this.byId = Collections.unmodifiableMap(byId);
    }

    /** A JWKS ({@code {"keys": [...]}}); keys other than OKP Ed25519 signing keys are refused. */
    public static VerificationKeys fromJwks(JsonNode jwks) {
        Map<String, PublicKey> keys = new LinkedHashMap<>();
        JsonNode list = jwks.path("keys");
        if (!list.isArray() || list.isEmpty()) {
            throw new IllegalArgumentException("a JWKS with at least one key is required");
        }
        for (JsonNode jwk : list) {
            if (!"OKP".equals(jwk.path("kty").asText()) || !"Ed25519".equals(jwk.path("crv").asText())
                    || !jwk.hasNonNull("kid") || !jwk.hasNonNull("x")) {
                throw new IllegalArgumentException("not an OKP Ed25519 JWK with a kid: " + jwk.path("kid").asText("?"));
            }
            if (jwk.has("use") && !"sig".equals(jwk.get("use").asText())) {
                continue;
            }
            keys.put(jwk.get("kid").asText(), Ed25519Keys.publicKey(Signing.unb64url(jwk.get("x").asText())));
        }
        return new VerificationKeys(keys);
    }

    public static VerificationKeys fromJson(String jwks) {
        return fromJwks(Json.parse(jwks));
    }

    public static VerificationKeys load(Path path) throws IOException {
        return fromJson(Files.readString(path, StandardCharsets.UTF_8));
    }

    /** The keys a service serves: {@code <service URL>/.well-known/punte-network-keys.json}, or the full URL. */
    public static VerificationKeys fetch(URI url) throws IOException, InterruptedException {
        URI where = url.getPath() == null || !url.getPath().endsWith(".json")
                ? URI.create(url.toString().replaceAll("/+$", "") + WELL_KNOWN_PATH) : url;
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        HttpResponse<String> answer = client.send(
                HttpRequest.newBuilder(where).timeout(Duration.ofSeconds(10)).GET().build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        if (answer.statusCode() != 200) {
            throw new IOException("GET " + where + ": HTTP " + answer.statusCode());
        }
        return fromJson(answer.body());
    }

    /** A URL (http, https) or a file path. */
    public static VerificationKeys fromUrlOrFile(String where) throws IOException, InterruptedException {
        return where.startsWith("http://") || where.startsWith("https://")
                ? fetch(URI.create(where)) : load(Path.of(where));
    }

    /** The key ids, current first. */
    public List<String> keyIds() {
        return List.copyOf(byId.keySet());
    }

    /**
     * Refuses, in the network's order, unless {@code signature} by key {@code keyId} covers
     * the message: MISSING_SIGNATURE (no signature or key id), UNKNOWN_KEY (a key not in this
     * set), BAD_SIGNATURE (an unknown ce_sigversion, a signature not spelt as 86 base64url
     * characters without padding, a signed attribute with a control character, or a
     * signature that does not verify).
     */
    public void verify(String keyId, String signature, String sigversion, String id, String source, String type,
                       String time, String subject, byte[] body) {
        if (signature == null || signature.isEmpty() || keyId == null || keyId.isEmpty()) {
            throw new PunteException("MISSING_SIGNATURE", "ce_signature and ce_keyid are required");
        }
        PublicKey key = byId.get(keyId);
        if (key == null) {
            throw new PunteException("UNKNOWN_KEY", "key " + keyId + " is not a trusted key");
        }
        int version = Signing.versionOf(sigversion);
        if (version < 0) {
            throw new PunteException("BAD_SIGNATURE", "unknown ce_sigversion");
        }
        if (!Signing.SIGNATURE_SPELLING.matcher(signature).matches()) {
            throw new PunteException("BAD_SIGNATURE", "ce_signature is not 86 characters of base64url without padding");
        }
        for (String attribute : new String[] {id, source, type, time, subject}) {
            if (Signing.hasControlCharacters(attribute)) {
                throw new PunteException("BAD_SIGNATURE", "a signed attribute holds a control character");
            }
        }
        boolean valid;
        try {
            Signature verifier = Signature.getInstance("Ed25519");
            verifier.initVerify(key);
            verifier.update(Signing.input(id, source, type, time, subject, body, version));
            valid = verifier.verify(Signing.unb64url(signature));
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            valid = false;
        }
        if (!valid) {
            throw new PunteException("BAD_SIGNATURE", "signature does not verify");
        }
    }

    /** {@link #decode(List, byte[])} of a Kafka record's headers. */
    public Event decode(org.apache.kafka.common.header.Headers headers, byte[] value) {
        List<Header> text = new java.util.ArrayList<>();
        for (org.apache.kafka.common.header.Header h : headers) {
            text.add(new Header(h.key(), h.value() == null ? "" : new String(h.value(), StandardCharsets.UTF_8)));
        }
        return decode(text, value);
    }

    /**
     * A verified event from a record's headers (later duplicates win, as at the network) and
     * value, or a PunteException: MALFORMED_ENVELOPE (a required ce_* header missing or
     * unreadable, content-type not JSON), then the codes of {@link #verify}, then
     * MALFORMED_PAYLOAD (the value is not a UTF-8 JSON object). Nothing of an unverified
     * body is parsed.
     */
    public Event decode(List<Header> headers, byte[] value) {
        Map<String, String> h = new LinkedHashMap<>();
        for (Header header : headers) {
            h.put(header.name(), header.value());
        }
        List<String> missing = REQUIRED.stream().filter(k -> h.get(k) == null || h.get(k).isEmpty()).toList();
        if (!missing.isEmpty()) {
            throw new PunteException("MALFORMED_ENVELOPE", "missing headers: " + String.join(", ", missing));
        }
        String subject = h.get("ce_subject");
        for (String name : new String[] {"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_subject"}) {
            String v = h.get(name);
            if (v != null && (v.indexOf('\ufffd') >= 0 || Signing.hasControlCharacters(v))) {
                throw new PunteException("MALFORMED_ENVELOPE", "unreadable characters in " + name);
            }
        }
        if (!Event.SPECVERSION.equals(h.get("ce_specversion"))) {
            throw new PunteException("MALFORMED_ENVELOPE", "unsupported ce_specversion (1.0 is)");
        }
        try {
            OffsetDateTime.parse(h.get("ce_time"));
        } catch (DateTimeParseException e) {
            throw new PunteException("MALFORMED_ENVELOPE", "ce_time is not RFC 3339");
        }
        String contentType = h.getOrDefault("content-type", "");
        if (!contentType.split(";", 2)[0].trim().equalsIgnoreCase(Event.CONTENT_TYPE)) {
            throw new PunteException("MALFORMED_ENVELOPE", "content-type is not application/json");
        }
        byte[] body = value == null ? new byte[0] : value;
        verify(h.get("ce_keyid"), h.get("ce_signature"), h.get("ce_sigversion"), h.get("ce_id"), h.get("ce_source"),
                h.get("ce_type"), h.get("ce_time"), subject, body);
        Event event;
        try {
            event = Event.ofBody(h.get("ce_id"), h.get("ce_source"), h.get("ce_type"), h.get("ce_time"),
                    subject == null || subject.isEmpty() ? null : subject, body);
        } catch (IllegalArgumentException e) {
            throw new PunteException("MALFORMED_PAYLOAD", "the value is not a UTF-8 JSON object");
        }
        Map<String, String> extensions = new LinkedHashMap<>();
        h.forEach((k, v) -> {
            if (k.startsWith("ce_") && !REQUIRED.contains(k) && !k.equals("ce_subject")) {
                extensions.put(k.substring(3), v);
            }
        });
        return event.withExtensions(extensions);
    }
}
