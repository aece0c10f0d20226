package ro.punte.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/** contracts/test-vectors/signing.json: the SDK signs what the network signs, and refuses what it refuses. */
class SigningVectorsTest {
    private static final JsonNode VECTORS = Vectors.json("signing.json");
    private static final JsonNode JWK = VECTORS.get("keys").get(0);

    /** The institution's public keys, as a receiver holds them (the JWK without d). */
    private static VerificationKeys receiver() {
        ObjectNode keys = Json.object();
        ObjectNode publicJwk = ((ObjectNode) JWK.deepCopy());
        publicJwk.remove("d");
        keys.putArray("keys").add(publicJwk);
        return VerificationKeys.fromJwks(keys);
    }

    private static Event event(JsonNode headers, byte[] body) {
        return Event.ofBody(headers.path("ce_id").asText(), headers.path("ce_source").asText(),
                headers.path("ce_type").asText(), headers.path("ce_time").asText(),
                headers.hasNonNull("ce_subject") ? headers.get("ce_subject").asText() : null, body);
    }

    private static List<Header> headerList(JsonNode headers) {
        List<Header> out = new ArrayList<>();
        headers.properties().forEach(f -> out.add(new Header(f.getKey(), f.getValue().asText())));
        return out;
    }

    @TestFactory
    Stream<DynamicTest> validCasesSignAndVerifyAsTheNetworkDoes() {
        InstitutionKey key = InstitutionKey.fromJwk(JWK);
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : VECTORS.get("valid")) {
            tests.add(DynamicTest.dynamicTest(c.get("name").asText(), () -> {
                JsonNode headers = c.get("headers");
                byte[] body = Vectors.utf8(c.get("body"));
                int version = c.get("sigversion").asInt();
                Event unsigned = event(headers, body);
                assertArrayEquals(Signing.unb64url(c.get("signing_input").asText()), Signing.input(unsigned, version));
                Event signed = key.sign(unsigned, version);
                assertEquals(c.get("signature").asText(), signed.signature());
                assertEquals(headers.get("ce_keyid").asText(), signed.keyId());
                // The headers the SDK sends are the vector's, in its order.
                assertEquals(headerList(headers), signed.headers());
                Event decoded = receiver().decode(signed.headers(), signed.body());
                assertArrayEquals(body, decoded.body());
            }));
        }
        return tests.stream();
    }

    @TestFactory
    Stream<DynamicTest> refusedCasesAreRefusedWithTheNetworksCode() {
        VerificationKeys keys = receiver();
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : VECTORS.get("refused")) {
            tests.add(DynamicTest.dynamicTest(c.get("name").asText(), () -> {
                PunteException refused = assertThrows(PunteException.class,
                        () -> keys.decode(headerList(c.get("headers")), Vectors.utf8(c.get("body"))));
                assertEquals(c.get("code").asText(), refused.code());
            }));
        }
        return tests.stream();
    }

    @TestFactory
    Stream<DynamicTest> bodiesBuiltFromDataAreTheNetworksBytes() {
        // The SDK's compact JSON of each valid case's data is the body the network signed.
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : VECTORS.get("valid")) {
            tests.add(DynamicTest.dynamicTest(c.get("name").asText(), () -> {
                ObjectNode data = Json.parseObject(c.get("body").asText());
                JsonNode headers = c.get("headers");
                Event built = Event.of(headers.get("ce_id").asText(), headers.get("ce_source").asText(),
                        headers.get("ce_type").asText(), headers.get("ce_time").asText(),
                        headers.hasNonNull("ce_subject") ? headers.get("ce_subject").asText() : null, data);
                assertArrayEquals(Vectors.utf8(c.get("body")), built.body());
            }));
        }
        return tests.stream();
    }

    @org.junit.jupiter.api.Test
    void aKeyFileAsTheOperatorWritesItLoads() throws Exception {
        // runtime/signing.py SigningKey.save: {"key_id", "pem"} with an unencrypted PKCS #8 PEM.
        InstitutionKey fromJwk = InstitutionKey.fromJwk(JWK);
        byte[] pkcs8 = new byte[48];
        System.arraycopy(java.util.HexFormat.of().parseHex("302e020100300506032b657004220420"), 0, pkcs8, 0, 16);
        System.arraycopy(Signing.unb64url(JWK.get("d").asText()), 0, pkcs8, 16, 32);
        String pem = "-----BEGIN PRIVATE KEY-----\n" + java.util.Base64.getEncoder().encodeToString(pkcs8)
                + "\n-----END PRIVATE KEY-----\n";
        ObjectNode file = Json.object().put("key_id", "spas-colonesti-test-1").put("pem", pem);
        java.nio.file.Path path = java.nio.file.Files.createTempFile("punte-key", ".json");
        try {
            java.nio.file.Files.writeString(path, Json.compactString(file));
            InstitutionKey loaded = InstitutionKey.load(path);
            assertEquals("spas-colonesti-test-1", loaded.keyId());
            byte[] message = "punte".getBytes(java.nio.charset.StandardCharsets.UTF_8);
            assertArrayEquals(fromJwk.signRaw(message), loaded.signRaw(message));
        } finally {
            java.nio.file.Files.delete(path);
        }
    }

    @org.junit.jupiter.api.Test
    void controlCharactersAreNeverSigned() {
        InstitutionKey key = InstitutionKey.fromJwk(JWK);
        Event withNewline = Event.of("id-1", "/institutions/spas-colonesti", "ro.punte.referral.command.v1",
                "2026-03-10T09:30:00+02:00", "case-1\n{", Json.object());
        assertThrows(IllegalArgumentException.class, () -> key.sign(withNewline));
        assertTrue(Signing.hasControlCharacters("a\u0085b"));
    }
}
