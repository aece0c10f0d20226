package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.util.Base64;

/**
 * Intake's HTTP gateway, for systems without Kafka: the same signed CloudEvents, posted to
 * {@code <intake>/v1/events} with a token of the institution's system account ({@code
 * sys.<institution>}, OAuth 2.0 client credentials, HTTP Basic client authentication, the
 * token endpoint from {@code <identity>/.well-known/openid-configuration}). The answer is
 * the outcome the network sent back (200 accepted, 422 rejected), or {@code processing} with
 * the place to poll (202); any other answer is a PunteException with the refusal's code.
 */
public final class Gateway {
    /** The longest wait intake holds a request for (its {@code ?wait=} maximum). */
    public static final Duration MAX_SERVER_WAIT = Duration.ofSeconds(30);
    private static final Duration POLL_EVERY = Duration.ofMillis(500);

    private final URI intake;
    private final URI identity;
    private final String clientId;
    private final String clientSecret;
    private final HttpClient http;
    private String token;
    private Instant tokenExpires = Instant.MIN;

    /** For institution {@code institution}: client id {@code sys.<institution>} and its secret. */
    public Gateway(URI intake, URI identity, String institution, String clientSecret) {
        this.intake = trimmed(intake);
        this.identity = trimmed(identity);
        this.clientId = "sys." + institution;
        this.clientSecret = clientSecret;
        this.http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();
    }

    /**
     * The bytes a structured-mode request's signature covers, as the gateway computes them:
     * {@code data} as compact JSON (no spaces, non-ASCII as is, keys in the order sent), or
     * the decoded bytes of {@code data_base64}. Sign exactly these.
     */
    public static byte[] structuredSignedBody(String request) {
        ObjectNode envelope = Json.parseObject(request);
        if (envelope.has("data_base64")) {
            return Base64.getDecoder().decode(envelope.get("data_base64").asText());
        }
        if (envelope.has("data")) {
            return Json.compact(envelope.get("data"));
        }
        throw new IllegalArgumentException("data or data_base64 is required");
    }

    /** A structured-mode request (application/cloudevents+json) for a signed event, its body as data_base64. */
    public static String structuredRequest(Event event) {
        ObjectNode envelope = Json.object();
        envelope.put("specversion", Event.SPECVERSION);
        envelope.put("id", event.id());
        envelope.put("source", event.source());
        envelope.put("type", event.type());
        envelope.put("time", event.time());
        if (event.subject() != null) {
            envelope.put("subject", event.subject());
        }
        event.extensions().forEach(envelope::put);
        envelope.put("datacontenttype", Event.CONTENT_TYPE);
        envelope.put("data_base64", Base64.getEncoder().encodeToString(event.body()));
        return Json.compactString(envelope);
    }

    /** An access token of the system account, fetched again a minute before it expires. */
    public synchronized String token() throws IOException, InterruptedException {
        if (token != null && Instant.now().isBefore(tokenExpires)) {
            return token;
        }
        JsonNode discovery = getJson(URI.create(identity + "/.well-known/openid-configuration"));
        URI endpoint = URI.create(discovery.path("token_endpoint").asText());
        String basic = Base64.getEncoder().encodeToString(
                (form(clientId) + ":" + form(clientSecret)).getBytes(StandardCharsets.UTF_8));
        HttpResponse<String> answer = http.send(HttpRequest.newBuilder(endpoint).timeout(Duration.ofSeconds(30))
                .header("Authorization", "Basic " + basic)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .POST(HttpRequest.BodyPublishers.ofString("grant_type=client_credentials")).build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        JsonNode body = parseOrEmpty(answer.body());
        if (answer.statusCode() != 200) {
            // RFC 6749 section 5.2: error and error_description.
            String error = body.path("error").asText("HTTP_" + answer.statusCode());
            String description = body.path("error_description").asText(error);
            throw new PunteException(error, description, description, answer.statusCode());
        }
        token = body.path("access_token").asText();
        tokenExpires = Instant.now().plusSeconds(Math.max(0, body.path("expires_in").asLong(300) - 60));
        return token;
    }

    /**
     * Posts a signed event and waits up to {@code wait} for its outcome: the server holds the
     * request up to 30 s, then the SDK polls the {@code Location} it answered. Binary mode
     * ({@code ce-*} headers, the body as sent) when every attribute is ASCII; structured mode
     * with {@code data_base64} otherwise (HTTP header values are not UTF-8), which keeps the
     * signed bytes exact either way.
     */
    public Outcome submit(Event event, Duration wait) throws IOException, InterruptedException {
        if (event.signature() == null) {
            throw new IllegalArgumentException("sign the event first (InstitutionKey.sign)");
        }
        Instant deadline = Instant.now().plus(wait);
        Duration serverWait = wait.compareTo(MAX_SERVER_WAIT) > 0 ? MAX_SERVER_WAIT : wait;
        URI uri = URI.create(intake + "/v1/events?wait=" + serverWait.toMillis() / 1000.0);
        HttpRequest.Builder request = HttpRequest.newBuilder(uri).timeout(serverWait.plusSeconds(30))
                .header("Authorization", "Bearer " + token());
        if (event.headers().stream().allMatch(h -> h.value().chars().allMatch(c -> c >= 0x20 && c < 0x7f))) {
            for (Header h : event.headers()) {
                if (h.name().startsWith("ce_")) {
                    request.header("ce-" + h.name().substring(3), h.value());
                }
            }
            request.header("Content-Type", Event.CONTENT_TYPE).POST(HttpRequest.BodyPublishers.ofByteArray(event.body()));
        } else {
            request.header("Content-Type", "application/cloudevents+json")
                    .POST(HttpRequest.BodyPublishers.ofString(structuredRequest(event), StandardCharsets.UTF_8));
        }
        Outcome outcome = answer(http.send(request.build(), HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8)));
        while (outcome.processing() && Instant.now().isBefore(deadline)) {
            Thread.sleep(POLL_EVERY.toMillis());
            Outcome polled = poll(outcome.location());
            outcome = polled == null ? outcome : polled;
        }
        return outcome;
    }

    /** The outcome of event {@code id} of this institution, or null while there is none. */
    public Outcome outcome(String source, String id) throws IOException, InterruptedException {
        return poll("/v1/events/outcome?source=" + form(source) + "&id=" + form(id));
    }

    private Outcome poll(String location) throws IOException, InterruptedException {
        HttpResponse<String> answer = http.send(HttpRequest.newBuilder(intake.resolve(location))
                .timeout(Duration.ofSeconds(30)).header("Authorization", "Bearer " + token()).GET().build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        if (answer.statusCode() == 404 && "NOT_YET".equals(parseOrEmpty(answer.body()).path("detail").path("code").asText())) {
            return null;
        }
        return answer(answer);
    }

    private static Outcome answer(HttpResponse<String> answer) {
        JsonNode body = parseOrEmpty(answer.body());
        switch (answer.statusCode()) {
            case 200, 422 -> {
                if (body.has("status") && body.has("subject_id")) {
                    return Outcome.of(body);
                }
            }
            case 202 -> {
                String location = answer.headers().firstValue("Location").orElse(body.path("location").asText());
                return new Outcome(Json.object().put("status", "processing"), location);
            }
            default -> {
            }
        }
        JsonNode detail = body.path("detail");
        if (detail.isObject() && detail.has("code")) {
            throw PunteException.fromReason(detail, answer.statusCode());
        }
        String text = "HTTP " + answer.statusCode() + ": " + answer.body();
        throw new PunteException("HTTP_" + answer.statusCode(), text, text, answer.statusCode());
    }

    private JsonNode getJson(URI uri) throws IOException, InterruptedException {
        HttpResponse<String> answer = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(30)).GET().build(),
                HttpResponse.BodyHandlers.ofString(StandardCharsets.UTF_8));
        if (answer.statusCode() != 200) {
            throw new IOException("GET " + uri + ": HTTP " + answer.statusCode());
        }
        return Json.parse(answer.body());
    }

    private static JsonNode parseOrEmpty(String text) {
        try {
            return Json.parse(text);
        } catch (IllegalArgumentException e) {
            return Json.object();
        }
    }

    /** application/x-www-form-urlencoded, as RFC 6749 section 2.3.1 asks before the Basic base64. */
    private static String form(String text) {
        return URLEncoder.encode(text, StandardCharsets.UTF_8);
    }

    private static URI trimmed(URI uri) {
        return URI.create(uri.toString().replaceAll("/+$", ""));
    }
}
