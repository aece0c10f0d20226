package ro.punte.sdk.examples;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.nimbusds.jose.jwk.JWKSet;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import java.util.Properties;
import ro.punte.sdk.DeliveryReader;
import ro.punte.sdk.Event;
import ro.punte.sdk.IngressProducer;
import ro.punte.sdk.InstitutionKey;
import ro.punte.sdk.Json;
import ro.punte.sdk.Outcome;
import ro.punte.sdk.Reports;
import ro.punte.sdk.Sealing;
import ro.punte.sdk.VerificationKeys;

/**
 * Sends one synthetic report as an institution's system would, and waits for its answer:
 * seals it to intake's key (v3), signs it, sends it to the institution's ingress topic, reads
 * the delivery topic until the outcome of that report arrives, verified with the network's
 * keys, and prints the outcome as JSON. Exit status 0 if accepted, 1 if rejected, 2 if no
 * outcome came within a minute.
 *
 * <pre>
 * java -cp 'target/punte-sdk-0.1.0.jar:target/lib/*' ro.punte.sdk.examples.SendReport \
 *     BOOTSTRAP INSTITUTION KEY_FILE INTAKE_URL NETWORK_KEYS [kafka.property=value ...]
 * </pre>
 * NETWORK_KEYS is a URL (any Punte service, or the JWKS's own URL) or a JWKS file; the
 * properties go to the Kafka clients (security.protocol, sasl.*, ssl.*; against the embedded
 * Tansu broker: enable.idempotence=false).
 */
public final class SendReport {
    private SendReport() {
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 5) {
            System.err.println("usage: SendReport BOOTSTRAP INSTITUTION KEY_FILE INTAKE_URL NETWORK_KEYS [kafka.property=value ...]");
            System.exit(64);
        }
        String bootstrap = args[0];
        String institution = args[1];
        InstitutionKey key = InstitutionKey.load(Path.of(args[2]));
        URI intake = URI.create(args[3]);
        VerificationKeys network = VerificationKeys.fromUrlOrFile(args[4]);
        Properties kafka = new Properties();
        for (int i = 5; i < args.length; i++) {
            String[] pair = args[i].split("=", 2);
            kafka.put(pair[0], pair.length > 1 ? pair[1] : "");
        }

        // Intake's current public key, fetched as any institution does.
        JWKSet intakeKeys = Sealing.fetchIntakeKeys(intake);
        Event report = key.sign(Reports.sealedV3(institution, syntheticReport(institution), intakeKeys));

        // Subscribed before sending, so the answer is not missed. The clients are closed
        // before the exit: a consumer that never leaves its group holds the next run's join
        // until its session expires.
        int status;
        try (DeliveryReader deliveries = new DeliveryReader(bootstrap, institution, "sdk-example", network, kafka);
             IngressProducer ingress = new IngressProducer(bootstrap, institution, kafka)) {
            ingress.send(report);
            System.err.println("sent " + report.id() + " to " + IngressProducer.topic(institution));
            Outcome outcome = deliveries.awaitOutcome(report.id(), Duration.ofSeconds(60));
            if (outcome == null) {
                System.err.println("no outcome for " + report.id() + " within a minute");
                status = 2;
            } else {
                deliveries.commit();
                System.out.println(outcome);
                status = outcome.accepted() ? 0 : 1;
            }
        }
        System.exit(status);
    }

    /** A report written as v2; every person in it is synthetic. */
    static ObjectNode syntheticReport(String institution) {
        ObjectNode report = Json.object();
        report.putObject("reporter").put("institution", institution).put("role", "social-worker");
        report.put("channel", "social-worker");
        report.putObject("child").put("given_name", "Ilinca").put("family_name", "Exemplu")
                .put("birth_date", "2017-04-09").put("sex", "F").put("uat_siruta", 21971).put("county", "BC");
        report.put("place_of_occurrence", "family");
        ObjectNode risk = report.putArray("risks").addObject();
        risk.put("category", "neglect");
        risk.putArray("indicators").add("copilul vine la școală flămând (exemplu sintetic)");
        report.put("description", "Copila rămâne nesupravegheată după-amiaza (date sintetice, SDK Java).");
        report.put("immediate_danger", false);
        return report;
    }
}
