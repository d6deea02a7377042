package regain.keycloak;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.security.SecureRandom;
import java.util.Base64;
import java.util.Locale;

import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/** Generation, normalisation and hashing of Temporary Access Pass secrets. */
public final class TapSecrets {

    /**
     * 32 symbols, so each one carries exactly 5 bits; the letters I, L, O and the digits 0, 1
     * are left out because they are easily confused when a pass is read aloud or copied.
     */
    public static final String ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789#";
    public static final int MIN_LENGTH = 8;
    public static final int MAX_LENGTH = 48;
    /** The hash algorithm recorded in the credential data. */
    public static final String HASH_ALGORITHM = "HMAC-SHA-256";

    private static final SecureRandom RANDOM = new SecureRandom();
    private static final Base64.Encoder B64 = Base64.getUrlEncoder().withoutPadding();

    private TapSecrets() {
    }

    /** A new secret of {@code length} symbols of {@link #ALPHABET}. */
    public static String generate(int length) {
        return generate(length, RANDOM);
    }

    static String generate(int length, SecureRandom random) {
        if (length < MIN_LENGTH || length > MAX_LENGTH) {
            throw new IllegalArgumentException(
                    "length must be between " + MIN_LENGTH + " and " + MAX_LENGTH);
        }
        StringBuilder out = new StringBuilder(length);
        for (int i = 0; i < length; i++) {
            // The alphabet size is a power of two, so this is free of modulo bias.
            out.append(ALPHABET.charAt(random.nextInt(ALPHABET.length())));
        }
        return out.toString();
    }

    /**
     * What the user typed, as it was issued: people group passes with spaces or dashes and
     * type them in lower case, none of which is part of the secret.
     */
    public static String normalise(String typed) {
        if (typed == null) {
            return "";
        }
        StringBuilder out = new StringBuilder(typed.length());
        typed.codePoints()
                .filter(c -> c != '-' && !Character.isWhitespace(c) && !Character.isSpaceChar(c))
                .forEach(out::appendCodePoint);
        return out.toString().toUpperCase(Locale.ROOT);
    }

    /** HMAC-SHA-256 of the UTF-8 bytes of {@code data} under {@code key}. */
    public static byte[] hmacSha256(byte[] key, String data) {
        try {
            Mac mac = Mac.getInstance("HmacSHA256");
            mac.init(new SecretKeySpec(key, "HmacSHA256"));
            return mac.doFinal(data.getBytes(StandardCharsets.UTF_8));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("HMAC-SHA-256 is not available", e);
        }
    }

    /** The stored form of a secret: base64url (no padding) of its keyed hash. */
    public static String hash(byte[] key, String secret) {
        return B64.encodeToString(hmacSha256(key, normalise(secret)));
    }

    /** Whether {@code typed} is the secret whose stored hash is {@code storedHash}, in constant time. */
    public static boolean matches(byte[] key, String typed, String storedHash) {
        if (storedHash == null) {
            return false;
        }
        byte[] expected = hmacSha256(key, normalise(typed));
        byte[] stored;
        try {
            stored = Base64.getUrlDecoder().decode(storedHash);
        } catch (IllegalArgumentException e) {
            return false;
        }
        return MessageDigest.isEqual(expected, stored);
    }

    /** Whether a normalised input is worth hashing at all: right length and alphabet. */
    public static boolean plausible(String normalised) {
        if (normalised.length() < MIN_LENGTH || normalised.length() > MAX_LENGTH) {
            return false;
        }
        for (int i = 0; i < normalised.length(); i++) {
            if (ALPHABET.indexOf(normalised.charAt(i)) < 0) {
                return false;
            }
        }
        return true;
    }
}
