package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.nimbusds.jose.EncryptionMethod;
import com.nimbusds.jose.JOSEException;
import com.nimbusds.jose.JWEAlgorithm;
import com.nimbusds.jose.JWEHeader;
import com.nimbusds.jose.JWEObject;
import com.nimbusds.jose.Payload;
import com.nimbusds.jose.crypto.ECDHDecrypter;
import com.nimbusds.jose.crypto.ECDHEncrypter;
import com.nimbusds.jose.jwk.Curve;
import com.nimbusds.jose.jwk.ECKey;
import com.nimbusds.jose.jwk.JWK;
import com.nimbusds.jose.jwk.JWKSet;
import java.io.IOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.text.ParseException;
import java.time.Duration;
import java.util.List;

/**
 * Report v3 (docs/contracts.md, "Sealing a report"): the identifying parts of a report sealed
 * to intake's public key as a JWE compact serialization, ECDH-ES+A256KW with A256GCM on
 * P-256, the key's {@code kid} in the protected header.
 */
public final class Sealing {
    public static final JWEAlgorithm ALG = JWEAlgorithm.ECDH_ES_A256KW;
    public static final EncryptionMethod ENC = EncryptionMethod.A256GCM;
    public static final String JWKS_PATH = "/.well-known/jwks.json";
    /** What a v2 report keeps in clear in v3, as punte/institution.py has it. */
    static final List<String> CLEAR_FIELDS = List.of("reporter", "channel", "place_of_occurrence",
            "immediate_danger", "already_informed", "observation_sheet", "occurred_at");
    static final List<String> WHERE_THE_CHILD_LIVES = List.of("uat_siruta", "county");

    private Sealing() {
    }

    /** Intake's public keys: {@code GET <intake>/.well-known/jwks.json}. */
    public static JWKSet fetchIntakeKeys(URI intake) throws IOException, InterruptedException {
        URI where = URI.create(intake.toString().replaceAll("/+$", "") + JWKS_PATH);
        HttpClient client = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
        HttpResponse<String> answer = client.send(HttpRequest.newBuilder(where).timeout(Duration.ofSeconds(10)).GET()
                .build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        if (answer.statusCode() != 200) {
            throw new IOException("GET " + where + ": HTTP " + answer.statusCode());
        }
        return parseJwks(answer.body());
    }

    public static JWKSet parseJwks(String json) {
        try {
            return JWKSet.parse(json);
        } catch (ParseException e) {
            throw new IllegalArgumentException("not a JWKS: " + e.getMessage(), e);
        }
    }

    /**
     * The key to seal to: the first of the set with {@code use: enc} and {@code alg:
     * ECDH-ES+A256KW} (intake lists its current key first), an EC P-256 key.
     */
    public static ECKey sealingKey(JWKSet intakeKeys) {
        for (JWK jwk : intakeKeys.getKeys()) {
            if (jwk.getKeyUse() != null && "enc".equals(jwk.getKeyUse().identifier())
                    && ALG.equals(jwk.getAlgorithm())) {
                if (!(jwk instanceof ECKey ec) || !Curve.P_256.equals(ec.getCurve()) || jwk.getKeyID() == null) {
                    throw new IllegalArgumentException("intake's first encryption key is not an EC P-256 key with a kid");
                }
                return ec.toPublicJWK();
            }
        }
        throw new IllegalArgumentException("intake's JWKS has no ECDH-ES+A256KW encryption key");
    }

    /** {@code plaintext} (UTF-8 JSON) as a JWE compact serialization to intake's first key. */
    public static String seal(JsonNode plaintext, JWKSet intakeKeys) {
        ECKey key = sealingKey(intakeKeys);
        JWEObject jwe = new JWEObject(new JWEHeader.Builder(ALG, ENC).keyID(key.getKeyID()).build(),
                new Payload(Json.compact(plaintext)));
        try {
            jwe.encrypt(new ECDHEncrypter(key));
        } catch (JOSEException e) {
            throw new IllegalStateException("sealing failed", e);
        }
        return jwe.serialize();
    }

    /**
     * Opens a sealed part with a private key of {@code privateKeys} (its {@code kid}): what
     * intake does. For tests and for checking one's own sealing with a test key.
     */
    public static JsonNode open(String compact, JWKSet privateKeys) {
        try {
            JWEObject jwe = JWEObject.parse(compact);
            if (!ALG.equals(jwe.getHeader().getAlgorithm()) || !ENC.equals(jwe.getHeader().getEncryptionMethod())) {
                throw new PunteException("SEALED_UNREADABLE", "not ECDH-ES+A256KW with A256GCM");
            }
            JWK jwk = privateKeys.getKeyByKeyId(jwe.getHeader().getKeyID());
            if (!(jwk instanceof ECKey ec) || !ec.isPrivate()) {
                throw new PunteException("SEALED_UNREADABLE", "no private key for kid " + jwe.getHeader().getKeyID());
            }
            jwe.decrypt(new ECDHDecrypter(ec));
            return Json.parse(jwe.getPayload().toBytes());
        } catch (ParseException | JOSEException | IllegalArgumentException e) {
            throw new PunteException("SEALED_UNREADABLE", "the JWE does not open: " + e.getMessage());
        }
    }

    /**
     * A report written as v2 ({@code ro.punte.report.submitted.v2} data), as v3 data: what
     * routing needs stays in clear (reporter, channel, the child's UAT and county, place,
     * the risks' categories, immediate danger, already informed, observation sheet,
     * occurred_at); the child's identity, the household, the description, the indicators and
     * notes are sealed with the binding {@code report: {id: eventId, institution: <reporter>}}.
     * {@code eventId} must be the ce_id of the event that carries it.
     */
    public static ObjectNode sealedReport(ObjectNode report, String eventId, JWKSet intakeKeys) {
        if (!report.path("description").isTextual() || !report.path("child").isObject()
                || !report.path("risks").isArray()) {
            throw new IllegalArgumentException("a report v2 has a child, risks and a description");
        }
        JsonNode child = report.path("child");
        ObjectNode clear = Json.object();
        for (String field : CLEAR_FIELDS) {
            if (report.has(field)) {
                clear.set(field, report.get(field).deepCopy());
            }
        }
        ObjectNode where = clear.putObject("child");
        ObjectNode identity = Json.object();
        child.properties().forEach(f -> {
            if (WHERE_THE_CHILD_LIVES.contains(f.getKey())) {
                where.set(f.getKey(), f.getValue().deepCopy());
            } else {
                identity.set(f.getKey(), f.getValue().deepCopy());
            }
        });
        ArrayNode risks = clear.putArray("risks");
        ObjectNode indicators = Json.object();
        for (JsonNode risk : report.path("risks")) {
            risks.addObject().set("category", risk.get("category").deepCopy());
            JsonNode said = risk.get("indicators");
            if (said != null && !said.isNull() && !said.isEmpty()) {
                indicators.set(risk.get("category").asText(), said.deepCopy());
            }
        }
        ObjectNode plaintext = Json.object();
        ObjectNode binding = plaintext.putObject("report");
        binding.put("id", eventId);
        binding.set("institution", report.path("reporter").path("institution").deepCopy());
        plaintext.set("child", identity);
        plaintext.set("description", report.path("description").deepCopy());
        if (report.has("household")) {
            plaintext.set("household", report.get("household").deepCopy());
        }
        if (!indicators.isEmpty()) {
            plaintext.set("indicators", indicators);
        }
        JsonNode notes = report.get("notes");
        if (notes != null && !notes.isNull() && !notes.asText().isEmpty()) {
            plaintext.set("notes", notes.deepCopy());
        }
        clear.put("sealed", seal(plaintext, intakeKeys));
        return clear;
    }
}
