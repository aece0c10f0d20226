package ro.punte.sdk;

import com.fasterxml.jackson.databind.node.ObjectNode;
import com.nimbusds.jose.jwk.JWKSet;
import java.util.UUID;

/** Report events of an institution, ready to sign (docs/contracts.md, "Report v2", "Sealing a report"). */
public final class Reports {
    public static final String V2 = "ro.punte.report.submitted.v2";
    public static final String V3 = "ro.punte.report.submitted.v3";

    private Reports() {
    }

    /** {@code /institutions/<id>}, the ce_source of everything an institution sends. */
    public static String source(String institution) {
        return "/institutions/" + institution;
    }

    /** A report v2 (in clear), from its data. */
    public static Event v2(String institution, ObjectNode report) {
        return Event.create(V2, source(institution), report, null);
    }

    /** A report written as v2, sent as v3: sealed to intake's first key, bound to the event's ce_id. */
    public static Event sealedV3(String institution, ObjectNode report, JWKSet intakeKeys) {
        String reporter = report.path("reporter").path("institution").asText();
        if (!institution.equals(reporter)) {
            // Intake would refuse it (SEALED_MISMATCH / SOURCE_MISMATCH): say so before sending.
            throw new IllegalArgumentException("the report's reporter.institution is " + reporter + ", not " + institution);
        }
        String id = UUID.randomUUID().toString();
        return Event.create(id, V3, source(institution), Sealing.sealedReport(report, id, intakeKeys), null);
    }
}
