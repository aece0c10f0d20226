package ro.punte.sdk;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.api.Test;

/** Compact JSON byte for byte as the network writes it (Python's json.dumps, ensure_ascii=False, no spaces). */
class JsonTest {
    @Test
    void numbersStringsAndOrderAsPythonWritesThem() {
        // Expected: the output of Python 3.11 for the same input.
        String input = "{\"a\": [1.0, 0.1, 1e-05, 1e16, 123456789012345678901234567890, -0.0, 2.5e-7, 1.5e300,"
                + " 100.0, 1234567890123456.7, 0.0001],"
                + " \"s\": \"\\u0000\\u001f\\u007f\\u2028\\\"\\\\\\/\\u0103\u00e9\\ud83d\\ude00\\n\\t\", \"z\": null, \"t\": true}";
        String python = "{\"a\":[1.0,0.1,1e-05,1e+16,123456789012345678901234567890,-0.0,2.5e-07,1.5e+300,100.0,"
                + "1234567890123456.8,0.0001],\"s\":\"\\u0000\\u001f\u007f\u2028\\\"\\\\/\u0103\u00e9\ud83d\ude00\\n\\t\","
                + "\"z\":null,\"t\":true}";
        assertEquals(python, Json.compactString(Json.parse(input)));
    }

    @Test
    void textAfterTheValueIsNotJson() {
        org.junit.jupiter.api.Assertions.assertThrows(IllegalArgumentException.class, () -> Json.parse("{} x"));
    }

    @Test
    void aRepeatedKeyKeepsItsFirstPlaceAndLastValue() {
        assertEquals("{\"a\":3,\"b\":2}", Json.compactString(Json.parse("{\"a\":1,\"b\":2,\"a\":3}")));
    }
}
