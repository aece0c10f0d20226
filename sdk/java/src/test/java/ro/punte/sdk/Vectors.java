package ro.punte.sdk;

import com.fasterxml.jackson.databind.JsonNode;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

/** The shared test vectors, contracts/test-vectors/ of the repository (../../ from sdk/java). */
final class Vectors {
    static final Path DIR = Path.of(System.getProperty("punte.test.vectors", "../../contracts/test-vectors"));

    private Vectors() {
    }

    static String text(String name) {
        try {
            return Files.readString(DIR.resolve(name), StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static JsonNode json(String name) {
        return Json.parse(text(name));
    }

    static byte[] utf8(JsonNode text) {
        return text.asText().getBytes(StandardCharsets.UTF_8);
    }
}
