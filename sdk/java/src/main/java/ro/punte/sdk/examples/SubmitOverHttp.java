package ro.punte.sdk.examples;

import com.nimbusds.jose.jwk.JWKSet;
import java.net.URI;
import java.nio.file.Path;
import java.time.Duration;
import ro.punte.sdk.Event;
import ro.punte.sdk.Gateway;
import ro.punte.sdk.InstitutionKey;
import ro.punte.sdk.Outcome;
import ro.punte.sdk.PunteException;
import ro.punte.sdk.Reports;
import ro.punte.sdk.Sealing;

/**
 * The same synthetic report as {@link SendReport}, through intake's HTTP gateway instead of
 * Kafka: a token for {@code sys.<institution>} (client credentials), then the sealed, signed
 * report posted in binary mode; prints the outcome as JSON. Exit status 0 if accepted, 1 if
 * rejected, 2 if still processing after a minute, 3 if the gateway refused the request (the
 * refusal's code and messages on standard error).
 *
 * <pre>
 * java -cp 'target/punte-sdk-0.1.0.jar:target/lib/*' ro.punte.sdk.examples.SubmitOverHttp \
 *     INTAKE_URL IDENTITY_URL INSTITUTION KEY_FILE   # the client secret in PUNTE_CLIENT_SECRET
 * </pre>
 */
public final class SubmitOverHttp {
    private SubmitOverHttp() {
    }

    public static void main(String[] args) throws Exception {
        String secret = System.getenv("PUNTE_CLIENT_SECRET");
        if (args.length != 4 || secret == null) {
            System.err.println("usage: PUNTE_CLIENT_SECRET=... SubmitOverHttp INTAKE_URL IDENTITY_URL INSTITUTION KEY_FILE");
            System.exit(64);
        }
        URI intake = URI.create(args[0]);
        String institution = args[2];
        InstitutionKey key = InstitutionKey.load(Path.of(args[3]));
        JWKSet intakeKeys = Sealing.fetchIntakeKeys(intake);
        Event report = key.sign(Reports.sealedV3(institution, SendReport.syntheticReport(institution), intakeKeys));
        Gateway gateway = new Gateway(intake, URI.create(args[1]), institution, secret);
        try {
            Outcome outcome = gateway.submit(report, Duration.ofSeconds(60));
            System.out.println(outcome.processing() ? "{\"status\":\"processing\",\"location\":\"" + outcome.location() + "\"}"
                    : outcome.toString());
            System.exit(outcome.accepted() ? 0 : outcome.rejected() ? 1 : 2);
        } catch (PunteException refused) {
            System.err.println(refused.code() + " (HTTP " + refused.status() + "): " + refused.messageRo()
                    + " / " + refused.messageEn());
            System.exit(3);
        }
    }
}
