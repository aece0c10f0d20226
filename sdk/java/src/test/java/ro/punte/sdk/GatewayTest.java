package ro.punte.sdk;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The gateway client against a stand-in for identity and intake on a loopback port. */
class GatewayTest {
    private static final InstitutionKey KEY = InstitutionKey.fromJwk(Vectors.json("signing.json").get("keys").get(0));
    private HttpServer server;
    private URI base;
    private final List<HttpExchange> requests = new ArrayList<>();
    private final List<byte[]> bodies = new ArrayList<>();
    private volatile int status = 200;
    private volatile String answer;
    private final AtomicInteger polls = new AtomicInteger();

    @BeforeEach
    void start() throws IOException {
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        base = URI.create("http://127.0.0.1:" + server.getAddress().getPort());
        server.createContext("/.well-known/openid-configuration", x -> reply(x, 200,
                "{\"token_endpoint\":\"" + base + "/token\"}"));
        server.createContext("/token", x -> {
            record(x);
            String basic = x.getRequestHeaders().getFirst("Authorization");
            boolean right = ("Basic " + Base64.getEncoder().encodeToString(
                    "sys.spas-colonesti:s%C4%83cret%3A1".getBytes(StandardCharsets.UTF_8))).equals(basic);
            reply(x, right ? 200 : 401, right ? "{\"access_token\":\"tok\",\"token_type\":\"Bearer\",\"expires_in\":3600}"
                    : "{\"error\":\"invalid_client\",\"error_description\":\"unknown client or wrong secret\"}");
        });
        server.createContext("/v1/events", x -> {
            record(x);
            if (x.getRequestURI().getPath().equals("/v1/events/outcome")) {
                boolean ready = polls.incrementAndGet() >= 2;
                reply(x, ready ? 200 : 404, ready ? accepted() : "{\"detail\":{\"code\":\"NOT_YET\","
                        + "\"message_ro\":\"încă nu\",\"message_en\":\"no answer yet\"}}");
                return;
            }
            if (status == 202) {
                x.getResponseHeaders().add("Location", "/v1/events/outcome?source=%2Finstitutions%2Fspas-colonesti&id=1");
            }
            reply(x, status, answer);
        });
        server.start();
    }

    @AfterEach
    void stop() {
        server.stop(0);
    }

    private void record(HttpExchange x) throws IOException {
        requests.add(x);
        bodies.add(x.getRequestBody().readAllBytes());
    }

    private static void reply(HttpExchange x, int code, String body) throws IOException {
        byte[] bytes = body.getBytes(StandardCharsets.UTF_8);
        x.getResponseHeaders().add("Content-Type", "application/json");
        x.sendResponseHeaders(code, bytes.length);
        x.getResponseBody().write(bytes);
        x.close();
    }

    private static String accepted() {
        return "{\"subject_id\":\"1\",\"subject_type\":\"ro.punte.report.submitted.v3\",\"status\":\"accepted\","
                + "\"reason\":null,\"informed\":[]}";
    }

    private Gateway gateway(String secret) {
        return new Gateway(base, base, "spas-colonesti", secret);
    }

    private static Event event(String subject) {
        return KEY.sign(Event.create(Reports.V3, Reports.source("spas-colonesti"),
                Json.parseObject("{\"note\":\"Bacău\"}"), subject));
    }

    @Test
    void binaryModeCarriesTheSignedBytesAndAttributesAsHeaders() throws Exception {
        answer = accepted();
        Event sent = event(null);
        Outcome outcome = gateway("săcret:1").submit(sent, Duration.ofSeconds(10));
        assertTrue(outcome.accepted());
        HttpExchange post = requests.get(1);
        assertEquals("Bearer tok", post.getRequestHeaders().getFirst("Authorization"));
        assertEquals("application/json", post.getRequestHeaders().getFirst("Content-Type"));
        assertEquals(sent.id(), post.getRequestHeaders().getFirst("ce-id"));
        assertEquals(sent.time(), post.getRequestHeaders().getFirst("ce-time"));
        assertEquals(sent.signature(), post.getRequestHeaders().getFirst("ce-signature"));
        assertEquals("2", post.getRequestHeaders().getFirst("ce-sigversion"));
        assertEquals("wait=10.0", post.getRequestURI().getQuery());
        assertArrayEquals(sent.body(), bodies.get(1));
    }

    @Test
    void aNonAsciiAttributeGoesInStructuredModeWithTheBodyAsDataBase64() throws Exception {
        answer = accepted();
        Event sent = event("ref-Ștefănești");
        gateway("săcret:1").submit(sent, Duration.ofSeconds(5));
        HttpExchange post = requests.get(1);
        assertEquals("application/cloudevents+json", post.getRequestHeaders().getFirst("Content-Type"));
        JsonNode envelope = Json.parse(bodies.get(1));
        assertEquals("ref-Ștefănești", envelope.get("subject").asText());
        assertEquals(sent.signature(), envelope.get("signature").asText());
        assertArrayEquals(sent.body(), Gateway.structuredSignedBody(new String(bodies.get(1), StandardCharsets.UTF_8)));
    }

    @Test
    void aRejectionIsAnOutcomeThatThrowsWithItsCodeWhenAsked() throws Exception {
        status = 422;
        answer = "{\"subject_id\":\"1\",\"subject_type\":\"ro.punte.report.submitted.v3\",\"status\":\"rejected\","
                + "\"reason\":{\"code\":\"SEALED_MISMATCH\",\"message_ro\":\"Partea sigilată nu corespunde.\","
                + "\"message_en\":\"The sealed part does not match.\"},\"informed\":[]}";
        Outcome outcome = gateway("săcret:1").submit(event(null), Duration.ofSeconds(5));
        assertEquals("SEALED_MISMATCH", outcome.reasonCode());
        PunteException refused = assertThrows(PunteException.class, outcome::orThrow);
        assertEquals("Partea sigilată nu corespunde.", refused.messageRo());
        assertEquals("The sealed part does not match.", refused.messageEn());
    }

    @Test
    void stillProcessingIsPolledAtItsLocation() throws Exception {
        status = 202;
        answer = "{\"status\":\"processing\",\"location\":\"/v1/events/outcome?id=1\"}";
        Outcome outcome = gateway("săcret:1").submit(event(null), Duration.ofSeconds(10));
        assertTrue(outcome.accepted());
        assertEquals(2, polls.get());
    }

    @Test
    void anErrorAnswerIsAnExceptionWithTheRefusal() {
        status = 413;
        answer = "{\"detail\":{\"code\":\"TOO_LARGE\",\"message_ro\":\"Prea mare.\",\"message_en\":\"Too large.\"}}";
        PunteException refused = assertThrows(PunteException.class,
                () -> gateway("săcret:1").submit(event(null), Duration.ofSeconds(5)));
        assertEquals("TOO_LARGE", refused.code());
        assertEquals(413, refused.status());
        assertEquals("Prea mare.", refused.messageRo());
    }

    @Test
    void aWrongSecretIsTheTokenEndpointsRefusal() {
        PunteException refused = assertThrows(PunteException.class,
                () -> gateway("wrong").submit(event(null), Duration.ofSeconds(5)));
        assertEquals("invalid_client", refused.code());
        assertEquals(401, refused.status());
    }
}
