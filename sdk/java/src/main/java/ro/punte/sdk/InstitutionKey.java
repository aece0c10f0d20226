package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.PrivateKey;
import java.security.Signature;
import java.util.Base64;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * An institution's Ed25519 signing key and its key id (ce_keyid). Loaded from the key file
 * the operator gives ({@code {"key_id": ..., "pem": <unencrypted PKCS #8 PEM>}}) or from an
 * RFC 8037 OKP JWK with its private {@code d} and a {@code kid}.
 */
public final class InstitutionKey {
    private final String keyId;
    private final PrivateKey privateKey;

    public InstitutionKey(String keyId, PrivateKey privateKey) {
        if (keyId == null || keyId.isEmpty() || Signing.hasControlCharacters(keyId)) {
            throw new IllegalArgumentException("a key id is required");
        }
        if (!"EdDSA".equals(privateKey.getAlgorithm()) && !"Ed25519".equals(privateKey.getAlgorithm())) {
            throw new IllegalArgumentException("not an Ed25519 key: " + privateKey.getAlgorithm());
        }
        this.keyId = keyId;
        this.privateKey = privateKey;
    }

    /** The key file: the operator's JSON ({@code key_id}, {@code pem}) or an OKP JWK. */
    public static InstitutionKey load(Path path) throws IOException {
        return fromJson(Files.readString(path, StandardCharsets.UTF_8));
    }

    public static InstitutionKey fromJson(String text) {
        JsonNode json = Json.parse(text);
        if (json.hasNonNull("pem")) {
            return fromPem(json.path("key_id").asText(""), json.get("pem").asText());
        }
        if (json.hasNonNull("kty")) {
            return fromJwk(json);
        }
        throw new IllegalArgumentException("a key file is {\"key_id\", \"pem\"} or an OKP JWK");
    }

    /** An unencrypted PKCS #8 PEM ("-----BEGIN PRIVATE KEY-----"). */
    public static InstitutionKey fromPem(String keyId, String pem) {
        if (!pem.contains("-----BEGIN PRIVATE KEY-----")) {
            throw new IllegalArgumentException("the PEM is not an unencrypted PKCS #8 private key");
        }
        String base64 = pem.replaceAll("-----(BEGIN|END) PRIVATE KEY-----", "").replaceAll("\\s", "");
        return new InstitutionKey(keyId, Ed25519Keys.pkcs8(Base64.getDecoder().decode(base64)));
    }

    /** An OKP JWK (crv Ed25519) with {@code d} and {@code kid}. */
    public static InstitutionKey fromJwk(JsonNode jwk) {
        if (!"OKP".equals(jwk.path("kty").asText()) || !"Ed25519".equals(jwk.path("crv").asText())
                || !jwk.hasNonNull("d")) {
            throw new IllegalArgumentException("not a private OKP Ed25519 JWK");
        }
        return new InstitutionKey(jwk.path("kid").asText(""),
                Ed25519Keys.privateKey(Signing.unb64url(jwk.get("d").asText())));
    }

    public String keyId() {
        return keyId;
    }

    /** The event signed with the v2 signing input: ce_keyid, ce_signature and ce_sigversion 2 set. */
    public Event sign(Event event) {
        return sign(event, Signing.CURRENT_VERSION);
    }

    /** The event signed with signing input {@code version} (1 or 2; v1 sends no ce_sigversion). */
    public Event sign(Event event, int version) {
        for (String attribute : new String[] {event.id(), event.source(), event.type(), event.time(), event.subject()}) {
            if (Signing.hasControlCharacters(attribute)) {
                throw new IllegalArgumentException("a signed attribute holds a control character");
            }
        }
        String signature = Signing.b64url(signRaw(Signing.input(event, version)));
        Map<String, String> extensions = new LinkedHashMap<>();
        extensions.put("keyid", keyId);
        extensions.put("signature", signature);
        Event signed = event.withoutExtension("sigversion").withExtensions(extensions);
        return version == 1 ? signed : signed.withExtensions(Map.of("sigversion", Integer.toString(version)));
    }

    /** The 64-byte Ed25519 signature of {@code message}. */
    public byte[] signRaw(byte[] message) {
        try {
            Signature signer = Signature.getInstance("Ed25519");
            signer.initSign(privateKey);
            signer.update(message);
            return signer.sign();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("Ed25519 signing failed", e);
        }
    }
}
