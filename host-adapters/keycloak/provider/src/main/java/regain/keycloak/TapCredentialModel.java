package regain.keycloak;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonInclude;
import com.fasterxml.jackson.annotation.JsonProperty;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.keycloak.credential.CredentialModel;

/**
 * A stored Temporary Access Pass: only a keyed hash of the secret is kept, together with
 * the id of the realm key that made it, so that the pass still verifies after a key rotation
 * that keeps the old key passive.
 */
public final class TapCredentialModel extends CredentialModel {

    private static final long serialVersionUID = 1L;

    /** The credential type, also the id of the credential provider. */
    public static final String TYPE = "regain-tap";
    /** The label shown for the pass in the admin and account consoles. */
    public static final String LABEL = "Temporary Access Pass";

    private static final ObjectMapper JSON = new ObjectMapper();

    /** The non-secret part, stored as {@code credentialData}. */
    @JsonInclude(JsonInclude.Include.NON_NULL)
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Data(
            @JsonProperty("expiresAt") long expiresAt,
            @JsonProperty("oneTime") boolean oneTime,
            @JsonProperty("keyId") String keyId,
            @JsonProperty("algorithm") String algorithm,
            @JsonProperty("notBefore") Long notBefore) {
    }

    /** The secret part, stored as {@code secretData}. */
    @JsonIgnoreProperties(ignoreUnknown = true)
    public record Secret(@JsonProperty("hash") String hash) {
    }

    private final transient Data data;
    private final transient Secret secret;

    private TapCredentialModel(Data data, Secret secret) {
        this.data = data;
        this.secret = secret;
    }

    /** A new pass, ready to be stored. */
    public static TapCredentialModel create(String hash, String keyId, long expiresAt, Long notBefore,
            boolean oneTime, long createdMillis) {
        Data data = new Data(expiresAt, oneTime, keyId, TapSecrets.HASH_ALGORITHM, notBefore);
        TapCredentialModel model = new TapCredentialModel(data, new Secret(hash));
        model.setType(TYPE);
        model.setUserLabel(LABEL);
        model.setCreatedDate(createdMillis);
        model.setCredentialData(write(data));
        model.setSecretData(write(model.secret));
        return model;
    }

    /**
     * The pass stored as {@code stored}.
     *
     * @throws IllegalArgumentException when the stored data is not a pass this provider wrote
     */
    public static TapCredentialModel fromModel(CredentialModel stored) {
        Data data = read(stored.getCredentialData(), Data.class);
        Secret secret = read(stored.getSecretData(), Secret.class);
        if (data.keyId() == null || secret.hash() == null
                || !TapSecrets.HASH_ALGORITHM.equals(data.algorithm())) {
            throw new IllegalArgumentException("incomplete Temporary Access Pass credential");
        }
        TapCredentialModel model = new TapCredentialModel(data, secret);
        model.setId(stored.getId());
        model.setType(stored.getType());
        model.setUserLabel(stored.getUserLabel());
        model.setCreatedDate(stored.getCreatedDate());
        model.setCredentialData(stored.getCredentialData());
        model.setSecretData(stored.getSecretData());
        return model;
    }

    public Data data() {
        return data;
    }

    public String hash() {
        return secret.hash();
    }

    /** Whether the pass has expired at {@code now} (epoch seconds). */
    public boolean isExpired(long now) {
        return now >= data.expiresAt();
    }

    /** Whether the pass is still in its waiting period at {@code now} (epoch seconds). */
    public boolean isNotYetValid(long now) {
        return data.notBefore() != null && now < data.notBefore();
    }

    private static String write(Object value) {
        try {
            return JSON.writeValueAsString(value);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("cannot write credential data", e);
        }
    }

    private static <T> T read(String text, Class<T> type) {
        if (text == null || text.isBlank()) {
            throw new IllegalArgumentException("missing credential data");
        }
        try {
            T value = JSON.readValue(text, type);
            if (value == null) {
                throw new IllegalArgumentException("missing credential data");
            }
            return value;
        } catch (JsonProcessingException e) {
            throw new IllegalArgumentException("unreadable credential data", e);
        }
    }
}
