package ro.punte.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;

/** contracts/test-vectors/gateway.json: the bytes a structured-mode request's signature covers. */
class GatewayVectorsTest {
    private static final JsonNode VECTORS = Vectors.json("gateway.json");

    @TestFactory
    Stream<DynamicTest> theSdkSignsTheBytesTheGatewayVerifies() {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode c : VECTORS.get("structured")) {
            tests.add(DynamicTest.dynamicTest(c.get("name").asText(), () ->
                    assertArrayEquals(Vectors.utf8(c.get("signed_body")),
                            Gateway.structuredSignedBody(c.get("request").asText()))));
        }
        return tests.stream();
    }
}
