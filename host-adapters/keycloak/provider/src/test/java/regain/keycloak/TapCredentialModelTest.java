package regain.keycloak;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.junit.jupiter.api.Test;
import org.keycloak.credential.CredentialModel;

class TapCredentialModelTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void storedDataHasTheAgreedShape() throws Exception {
        TapCredentialModel model = TapCredentialModel.create("aGFzaA", "kid-1", 2000, null, true, 5L);
        assertEquals("regain-tap", model.getType());
        JsonNode data = JSON.readTree(model.getCredentialData());
        assertEquals(2000, data.get("expiresAt").asLong());
        assertTrue(data.get("oneTime").asBoolean());
        assertEquals("kid-1", data.get("keyId").asText());
        assertEquals("HMAC-SHA-256", data.get("algorithm").asText());
        assertFalse(data.has("notBefore"));
        assertEquals("{\"hash\":\"aGFzaA\"}", model.getSecretData());
    }

    @Test
    void storedPassesReadBackWithTheirLifetime() {
        TapCredentialModel created = TapCredentialModel.create("aGFzaA", "kid-1", 2000, 1500L, false, 5L);
        CredentialModel stored = new CredentialModel();
        stored.setId("c-1");
        stored.setType(created.getType());
        stored.setCredentialData(created.getCredentialData());
        stored.setSecretData(created.getSecretData());
        TapCredentialModel back = TapCredentialModel.fromModel(stored);
        assertEquals("c-1", back.getId());
        assertEquals("aGFzaA", back.hash());
        assertFalse(back.data().oneTime());
        assertTrue(back.isNotYetValid(1499));
        assertFalse(back.isNotYetValid(1500));
        assertFalse(back.isExpired(1999));
        assertTrue(back.isExpired(2000));
        assertNull(TapCredentialModel.create("h", "k", 1, null, true, 0).data().notBefore());
    }

    @Test
    void unreadableDataIsRefused() {
        CredentialModel stored = new CredentialModel();
        stored.setType("regain-tap");
        stored.setCredentialData("{\"expiresAt\":1}");
        stored.setSecretData("{\"hash\":\"x\"}");
        assertThrows(IllegalArgumentException.class, () -> TapCredentialModel.fromModel(stored));
        stored.setCredentialData("not json");
        assertThrows(IllegalArgumentException.class, () -> TapCredentialModel.fromModel(stored));
        stored.setCredentialData(null);
        assertThrows(IllegalArgumentException.class, () -> TapCredentialModel.fromModel(stored));
    }
}
