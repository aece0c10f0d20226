package ro.punte.sdk;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.nimbusds.jose.jwk.JWKSet;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Properties;
import ro.punte.sdk.*;

/**
 * The worked example of sdk/java/README.md and docs/connecting.md ("Java SDK"), compiled with
 * the tests so that the page never shows code that does not build against this SDK. It is not
 * run here (it needs a network): tests/e2e/test_java_sdk.py runs the same steps as
 * ro.punte.sdk.examples.SendReport. tests/unit/test_sdk_examples.py checks that the text
 * between the markers is the page's, line for line.
 */
final class ReadmeExample {
    private ReadmeExample() {
    }

    static void example() throws Exception {
        // README example: begin
        String institution = "spas-colonesti";
        String bootstrap = "kafka-1.punte.example:9093";
        InstitutionKey key = InstitutionKey.load(Path.of("spas-colonesti.key"));
        JWKSet intakeKeys = Sealing.fetchIntakeKeys(URI.create("https://intake.punte.example"));
        VerificationKeys network = VerificationKeys.fetch(URI.create("https://intake.punte.example"));

        // The report as your system holds it: ro.punte.report.submitted.v2 data (synthetic here).
        ObjectNode report = Json.parseObject("""
            {"reporter": {"institution": "spas-colonesti", "role": "social-worker"},
             "channel": "social-worker",
             "child": {"given_name": "Ilinca", "family_name": "Exemplu", "birth_date": "2017-04-09",
                       "uat_siruta": 21971, "county": "BC"},
             "risks": [{"category": "neglect", "indicators": ["vine flămândă la școală"]}],
             "description": "Copila rămâne nesupravegheată după-amiaza (exemplu sintetic).",
             "immediate_danger": false}""");

        // v3: the identity, household, description and indicators sealed to intake's first key
        // (ECDH-ES+A256KW, A256GCM, its kid in the header), bound to this event's fresh ce_id and
        // your institution; the rest in clear. Then signed (v2 signing input, ce_sigversion 2).
        Event event = key.sign(Reports.sealedV3(institution, report, intakeKeys));

        Properties kafka = new Properties();   // your principal, e.g.:
        // kafka.put("security.protocol", "SASL_SSL"); kafka.put("sasl.mechanism", "SCRAM-SHA-512");
        // kafka.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"spas-colonesti\" password=\"...\";");
        // kafka.put("ssl.truststore.location", ...);
        try (DeliveryReader deliveries = new DeliveryReader(bootstrap, institution, "reports", network, kafka);
             IngressProducer ingress = new IngressProducer(bootstrap, institution, kafka)) {
            ingress.send(event);                          // punte.ingress.spas-colonesti, key = ce_id, acks=all
            Outcome outcome = deliveries.awaitOutcome(event.id(), Duration.ofSeconds(60));
            deliveries.commit();
            if (outcome == null) { /* none yet: resend the same event (same bytes, same ce_id) later */ }
            else if (outcome.accepted()) { /* outcome.json(): urgency, informed, merged, ... */ }
            else { System.out.println(outcome.reasonCode()); }   // e.g. INVALID_CNP, with RO/EN messages
        }
        // README example: end
    }
}
