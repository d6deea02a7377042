package regain.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.HexFormat;
import java.util.Set;

import org.junit.jupiter.api.Test;

class TapSecretsTest {

    private static final byte[] KEY = "realm hmac key".getBytes(StandardCharsets.UTF_8);

    @Test
    void theAlphabetHas32DistinctSymbols() {
        Set<Character> symbols = new HashSet<>();
        TapSecrets.ALPHABET.chars().forEach(c -> symbols.add((char) c));
        assertEquals(32, symbols.size());
        assertEquals(32, TapSecrets.ALPHABET.length());
    }

    @Test
    void secretsHaveTheLengthAndAlphabetAsked() {
        for (int length : new int[] {8, 24, 48}) {
            String secret = TapSecrets.generate(length);
            assertEquals(length, secret.length());
            for (char c : secret.toCharArray()) {
                assertTrue(TapSecrets.ALPHABET.indexOf(c) >= 0, "unexpected symbol " + c);
            }
        }
    }

    @Test
    void generationUsesTheWholeAlphabet() {
        Set<Character> seen = new HashSet<>();
        for (int i = 0; i < 200; i++) {
            for (char c : TapSecrets.generate(48).toCharArray()) {
                seen.add(c);
            }
        }
        assertEquals(32, seen.size());
    }

    @Test
    void lengthsOutsideTheRangeAreRefused() {
        assertThrows(IllegalArgumentException.class, () -> TapSecrets.generate(7));
        assertThrows(IllegalArgumentException.class, () -> TapSecrets.generate(49));
        assertThrows(IllegalArgumentException.class, () -> TapSecrets.generate(0));
    }

    @Test
    void hmacSha256MatchesRfc4231TestCase2() {
        byte[] mac = TapSecrets.hmacSha256("Jefe".getBytes(StandardCharsets.UTF_8), "what do ya want for nothing?");
        assertEquals("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", HexFormat.of().formatHex(mac));
    }

    @Test
    void typedPassesAreNormalised() {
        assertEquals("ABCDEFGHIJ", TapSecrets.normalise("abcd-efgh ij"));
        assertEquals("ABCD", TapSecrets.normalise(" a\tb\u00a0c-\nd "));
        assertEquals("", TapSecrets.normalise(null));
    }

    @Test
    void hashesAreBase64urlAndMatchOnlyTheirSecret() {
        String secret = TapSecrets.generate(24);
        String hash = TapSecrets.hash(KEY, secret);
        assertTrue(hash.matches("[A-Za-z0-9_-]{43}"));
        String grouped = secret.substring(0, 4).toLowerCase() + "-" + secret.substring(4, 8) + " " + secret.substring(8);
        assertTrue(TapSecrets.matches(KEY, grouped, hash));
        assertFalse(TapSecrets.matches(KEY, secret.substring(1), hash));
        assertFalse(TapSecrets.matches("another key".getBytes(StandardCharsets.UTF_8), secret, hash));
        assertFalse(TapSecrets.matches(KEY, secret, null));
        assertFalse(TapSecrets.matches(KEY, secret, "***"));
    }

    @Test
    void onlyPlausibleInputIsWorthChecking() {
        assertTrue(TapSecrets.plausible("ABCDEFGH"));
        assertFalse(TapSecrets.plausible("ABCDEFG"));
        assertFalse(TapSecrets.plausible("ABCDEFGO"));
        assertFalse(TapSecrets.plausible("A".repeat(49)));
    }
}
