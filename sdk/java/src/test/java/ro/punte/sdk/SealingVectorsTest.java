package ro.punte.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.nimbusds.jose.JWEObject;
import com.nimbusds.jose.jwk.JWKSet;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.Base64;
import org.junit.jupiter.api.Test;

/** contracts/test-vectors/sealing/: sealing that intake's key opens, and the npm jose package's JWE opened here. */
class SealingVectorsTest {
    private static final JWKSet PRIVATE = Sealing.parseJwks(Vectors.text("sealing/intake-test-key.jwks"));
    private static final java.nio.file.Path EXAMPLES =
            Vectors.DIR.resolve("../examples/ro.punte.report.submitted.v2").normalize();
    private static final JsonNode PLAINTEXT = Vectors.json("sealing/vector.plaintext.json");

    @Test
    void ourSealingOpensWithTheVectorsKeyToTheSameJson() throws Exception {
        String sealed = Sealing.seal(PLAINTEXT, PRIVATE.toPublicJWKSet());
        JWEObject jwe = JWEObject.parse(sealed);
        assertEquals("ECDH-ES+A256KW", jwe.getHeader().getAlgorithm().getName());
        assertEquals("A256GCM", jwe.getHeader().getEncryptionMethod().getName());
        assertEquals("intake-test-1", jwe.getHeader().getKeyID());
        assertEquals(PLAINTEXT, Sealing.open(sealed, PRIVATE));
    }

    @Test
    void theJwesOfTheNpmJosePackageOpen() {
        String vector = Vectors.text("sealing/vector.jwe").trim();
        assertEquals(PLAINTEXT, Sealing.open(vector, PRIVATE));
    }

    @Test
    void alteredBytesAreUnreadable() {
        String vector = Vectors.text("sealing/vector.jwe").trim();
        String[] parts = vector.split("\\.");
        byte[] tag = Base64.getUrlDecoder().decode(parts[4]);
        tag[0] ^= 1;
        parts[4] = Base64.getUrlEncoder().withoutPadding().encodeToString(tag);
        PunteException refused = assertThrows(PunteException.class,
                () -> Sealing.open(String.join(".", parts), PRIVATE));
        assertEquals("SEALED_UNREADABLE", refused.code());
    }

    @Test
    void aV2ReportIsSplitAsTheNetworkReadsIt() throws Exception {
        // The example report v2 of the contract, sealed for a fresh event id.
        ObjectNode report = Json.parseObject(Files.readString(EXAMPLES.resolve(firstExample()), StandardCharsets.UTF_8));
        String institution = report.get("reporter").get("institution").asText();
        Event event = Reports.sealedV3(institution, report, PRIVATE.toPublicJWKSet());
        assertEquals(Reports.V3, event.type());
        assertEquals("/institutions/" + institution, event.source());
        ObjectNode clear = event.data();
        // In clear: only what routing needs; the child's UAT and county, the risks' categories.
        for (String field : new String[] {"reporter", "channel", "place_of_occurrence", "immediate_danger",
                "already_informed", "observation_sheet", "occurred_at"}) {
            assertEquals(report.get(field), clear.get(field), field);
        }
        assertEquals(Json.parse("{\"uat_siruta\":21971,\"county\":\"BC\"}"), clear.get("child"));
        for (JsonNode risk : clear.get("risks")) {
            assertEquals(1, risk.size());
        }
        assertFalse(clear.has("description"));
        assertFalse(clear.has("household"));
        assertFalse(new String(event.body(), StandardCharsets.UTF_8).contains("Probescu"));
        // Sealed: the binding to this event and sender, the identity, household, story, indicators.
        JsonNode sealed = Sealing.open(clear.get("sealed").asText(), PRIVATE);
        assertEquals(event.id(), sealed.get("report").get("id").asText());
        assertEquals(institution, sealed.get("report").get("institution").asText());
        assertEquals(report.get("description"), sealed.get("description"));
        assertEquals(report.get("household"), sealed.get("household"));
        assertFalse(sealed.get("child").has("uat_siruta"));
        assertEquals(report.get("child").get("cnp"), sealed.get("child").get("cnp"));
        assertTrue(sealed.get("indicators").has(report.get("risks").get(0).get("category").asText()));
    }

    private static String firstExample() throws Exception {
        try (var files = Files.list(EXAMPLES)) {
            return files.map(p -> p.getFileName().toString()).filter(n -> n.endsWith(".json")).sorted()
                    .findFirst().orElseThrow();
        }
    }
}
