package regain.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import org.junit.jupiter.api.Test;

class TapIssueRequestTest {

    @Test
    void aGoodRequestIsRead() {
        TapIssueRequest r = TapIssueRequest.parse(
                "{\"lifetime_seconds\":3600,\"one_time\":true,\"length\":24,\"not_before_seconds\":0}");
        assertEquals(3600, r.lifetimeSeconds());
        assertTrue(r.oneTime());
        assertEquals(24, r.length());
        assertEquals(0, r.notBeforeSeconds());
        TapIssueRequest later = TapIssueRequest.parse(
                "{\"lifetime_seconds\":4294967295,\"one_time\":false,\"length\":8,\"not_before_seconds\":900}");
        assertEquals(4294967295L, later.lifetimeSeconds());
        assertFalse(later.oneTime());
        assertEquals(900, later.notBeforeSeconds());
        assertEquals(0, TapIssueRequest.parse("{\"lifetime_seconds\":1,\"one_time\":true,\"length\":48}").notBeforeSeconds());
    }

    @Test
    void badRequestsAreRefusedWithAReason() {
        String[][] cases = {
            {null, "JSON body"},
            {"", "JSON body"},
            {"not json", "not valid JSON"},
            {"[1]", "JSON object"},
            {"{\"one_time\":true,\"length\":24}", "lifetime_seconds is required"},
            {"{\"lifetime_seconds\":0,\"one_time\":true,\"length\":24}", "greater than 0"},
            {"{\"lifetime_seconds\":-1,\"one_time\":true,\"length\":24}", "lifetime_seconds must be"},
            {"{\"lifetime_seconds\":4294967296,\"one_time\":true,\"length\":24}", "lifetime_seconds must be"},
            {"{\"lifetime_seconds\":1.5,\"one_time\":true,\"length\":24}", "lifetime_seconds must be"},
            {"{\"lifetime_seconds\":\"60\",\"one_time\":true,\"length\":24}", "lifetime_seconds must be"},
            {"{\"lifetime_seconds\":60,\"one_time\":\"yes\",\"length\":24}", "one_time"},
            {"{\"lifetime_seconds\":60,\"length\":24}", "one_time"},
            {"{\"lifetime_seconds\":60,\"one_time\":true,\"length\":7}", "length"},
            {"{\"lifetime_seconds\":60,\"one_time\":true,\"length\":49}", "length"},
            {"{\"lifetime_seconds\":60,\"one_time\":true,\"length\":24.0}", "length"},
            {"{\"lifetime_seconds\":60,\"one_time\":true}", "length"},
            {"{\"lifetime_seconds\":60,\"one_time\":true,\"length\":24,\"not_before_seconds\":-5}", "not_before_seconds"},
            {"{\"lifetime_seconds\":60,\"one_time\":true,\"length\":24,\"length\":25}", "not valid JSON"},
        };
        for (String[] c : cases) {
            IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> TapIssueRequest.parse(c[0]),
                    "for " + c[0]);
            assertTrue(e.getMessage().contains(c[1]), "for " + c[0] + ": " + e.getMessage());
        }
    }
}
