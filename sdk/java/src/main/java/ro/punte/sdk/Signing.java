package ro.punte.sdk;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Base64;
import java.util.regex.Pattern;

/**
 * The bytes an Ed25519 signature covers (docs/contracts.md, "Signing"). v2 (what the network
 * signs with, {@code ce_sigversion: 2}): "punte-sig-v2\n" then ce_id, ce_source, ce_type,
 * ce_time, ce_subject (or "") and the body, each as an SSH string (RFC 4251: a big-endian
 * uint32 length, then the bytes). v1 (no {@code ce_sigversion}): "punte-sig-v1\n", the five
 * attributes each followed by a newline, then the body.
 */
public final class Signing {
    public static final int CURRENT_VERSION = 2;
    /** The one spelling of ce_signature: 64 bytes in base64url without padding. */
    public static final Pattern SIGNATURE_SPELLING = Pattern.compile("[A-Za-z0-9_-]{86}");

    private Signing() {
    }

    public static byte[] input(String id, String source, String type, String time, String subject, byte[] body,
                               int version) {
        String[] attributes = {id, source, type, time, subject == null ? "" : subject};
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        if (version == 1) {
            out.writeBytes("punte-sig-v1\n".getBytes(StandardCharsets.UTF_8));
            for (String attribute : attributes) {
                out.writeBytes((attribute + "\n").getBytes(StandardCharsets.UTF_8));
            }
            out.writeBytes(body);
            return out.toByteArray();
        }
        if (version == 2) {
            out.writeBytes("punte-sig-v2\n".getBytes(StandardCharsets.UTF_8));
            for (String attribute : attributes) {
                sshString(out, attribute.getBytes(StandardCharsets.UTF_8));
            }
            sshString(out, body);
            return out.toByteArray();
        }
        throw new IllegalArgumentException("no signing input version " + version);
    }

    /** The signing input of an event, over its body bytes as they will be sent. */
    public static byte[] input(Event event, int version) {
        return input(event.id(), event.source(), event.type(), event.time(), event.subject(), event.body(), version);
    }

    /** The version a {@code ce_sigversion} value names (absent or empty: 1), or -1 if unknown. */
    public static int versionOf(String header) {
        if (header == null || header.isEmpty() || header.equals("1")) {
            return 1;
        }
        return header.equals("2") ? 2 : -1;
    }

    /** Whether the text holds a control character (Unicode category Cc), which is never signed. */
    public static boolean hasControlCharacters(String text) {
        return text != null && text.chars().anyMatch(c -> Character.getType(c) == Character.CONTROL);
    }

    public static String b64url(byte[] raw) {
        return Base64.getUrlEncoder().withoutPadding().encodeToString(raw);
    }

    public static byte[] unb64url(String text) {
        return Base64.getUrlDecoder().decode(text);
    }

    private static void sshString(ByteArrayOutputStream out, byte[] field) {
        out.writeBytes(ByteBuffer.allocate(4).putInt(field.length).array());
        out.writeBytes(field);
    }
}
