package ro.punte.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/** contracts/test-vectors/deliveries.json: deliveries verified with the network's JWKS and decoded, or refused. */
class DeliveryVectorsTest {
    private static final JsonNode VECTORS = Vectors.json("deliveries.json");

    @TestFactory
    Stream<DynamicTest> eachRecordIsDecodedOrRefusedAsExpected() {
        VerificationKeys network = VerificationKeys.fromJwks(VECTORS.get("network_keys"));
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode record : VECTORS.get("records")) {
            tests.add(DynamicTest.dynamicTest(record.get("name").asText(), () -> {
                List<Header> headers = new ArrayList<>();
                for (JsonNode pair : record.get("headers")) {
                    headers.add(new Header(pair.get(0).asText(), pair.get(1).asText()));
                }
                byte[] value = Vectors.utf8(record.get("value"));
                JsonNode expect = record.get("expect");
                if (!expect.get("verified").asBoolean()) {
                    PunteException refused = assertThrows(PunteException.class, () -> network.decode(headers, value));
                    assertEquals(expect.get("code").asText(), refused.code());
                    return;
                }
                Event event = network.decode(headers, value);
                JsonNode want = expect.get("event");
                assertEquals(want.get("id").asText(), event.id());
                assertEquals(want.get("source").asText(), event.source());
                assertEquals(want.get("type").asText(), event.type());
                assertEquals(want.get("time").asText(), event.time());
                assertEquals(want.get("subject").isNull() ? null : want.get("subject").asText(), event.subject());
                assertEquals(want.get("data"), event.data());
                assertArrayEquals(value, event.body());
            }));
        }
        return tests.stream();
    }

    @org.junit.jupiter.api.Test
    void theCurrentKeyIsListedFirst() {
        VerificationKeys network = VerificationKeys.fromJwks(VECTORS.get("network_keys"));
        assertEquals(List.of("punte-test-1", "punte-test-0"), network.keyIds());
    }
}
