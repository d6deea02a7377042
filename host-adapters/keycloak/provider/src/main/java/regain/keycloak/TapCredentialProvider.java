package regain.keycloak;

import java.util.List;

import org.jboss.logging.Logger;
import org.keycloak.common.util.Time;
import org.keycloak.credential.CredentialInput;
import org.keycloak.credential.CredentialInputValidator;
import org.keycloak.credential.CredentialModel;
import org.keycloak.credential.CredentialProvider;
import org.keycloak.credential.CredentialTypeMetadata;
import org.keycloak.credential.CredentialTypeMetadataContext;
import org.keycloak.crypto.Algorithm;
import org.keycloak.crypto.KeyUse;
import org.keycloak.crypto.KeyWrapper;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.RealmModel;
import org.keycloak.models.UserModel;

/**
 * Temporary Access Passes as Keycloak credentials of type {@code regain-tap}. A pass is hashed
 * with the realm's HMAC signing key, so the stored hash is useless without Keycloak's keys.
 */
public class TapCredentialProvider implements CredentialProvider<TapCredentialModel>, CredentialInputValidator {

    private static final Logger LOG = Logger.getLogger(TapCredentialProvider.class);
    // HS512 is what new realms get; HS256 covers realms that kept an older key set-up.
    private static final List<String> HMAC_ALGORITHMS = List.of(Algorithm.HS512, Algorithm.HS256);

    /** A pass just issued; the secret exists in clear only in this value. */
    public record Issued(String id, String secret, long expiresAt) {
    }

    private final KeycloakSession session;

    public TapCredentialProvider(KeycloakSession session) {
        this.session = session;
    }

    @Override
    public String getType() {
        return TapCredentialModel.TYPE;
    }

    @Override
    public boolean supportsCredentialType(String credentialType) {
        return TapCredentialModel.TYPE.equals(credentialType);
    }

    @Override
    public CredentialModel createCredential(RealmModel realm, UserModel user, TapCredentialModel credential) {
        return user.credentialManager().createStoredCredential(credential);
    }

    @Override
    public boolean deleteCredential(RealmModel realm, UserModel user, String credentialId) {
        return user.credentialManager().removeStoredCredentialById(credentialId);
    }

    @Override
    public TapCredentialModel getCredentialFromModel(CredentialModel model) {
        return TapCredentialModel.fromModel(model);
    }

    @Override
    public CredentialTypeMetadata getCredentialTypeMetadata(CredentialTypeMetadataContext metadataContext) {
        return CredentialTypeMetadata.builder()
                .type(getType())
                .category(CredentialTypeMetadata.Category.TWO_FACTOR)
                .displayName("regainTapDisplayName")
                .helpText("regainTapHelpText")
                .iconCssClass("kcAuthenticatorDefaultClass")
                .removeable(true)
                .build(session);
    }

    /**
     * Issues a new pass for {@code user}, replacing any earlier one: a user has at most one
     * live pass, so a pass shown by an abandoned recovery cannot be used later.
     */
    public Issued issue(RealmModel realm, UserModel user, long lifetimeSeconds, boolean oneTime, int length,
            long notBeforeSeconds) {
        KeyWrapper key = activeKey(realm);
        List<String> older = user.credentialManager()
                .getStoredCredentialsByTypeStream(TapCredentialModel.TYPE)
                .map(CredentialModel::getId)
                .toList();
        older.forEach(id -> user.credentialManager().removeStoredCredentialById(id));

        String secret = TapSecrets.generate(length);
        long now = Time.currentTime();
        Long notBefore = notBeforeSeconds > 0 ? now + notBeforeSeconds : null;
        long expiresAt = now + lifetimeSeconds;
        TapCredentialModel model = TapCredentialModel.create(
                TapSecrets.hash(key.getSecretKey().getEncoded(), secret),
                key.getKid(), expiresAt, notBefore, oneTime, Time.currentTimeMillis());
        CredentialModel stored = createCredential(realm, user, model);
        LOG.debugf("Issued Temporary Access Pass %s for user %s in realm %s (replaced %d)",
                stored.getId(), user.getId(), realm.getName(), older.size());
        return new Issued(stored.getId(), secret, expiresAt);
    }

    @Override
    public boolean isConfiguredFor(RealmModel realm, UserModel user, String credentialType) {
        if (!supportsCredentialType(credentialType)) {
            return false;
        }
        long now = Time.currentTime();
        return user.credentialManager().getStoredCredentialsByTypeStream(TapCredentialModel.TYPE)
                .anyMatch(stored -> {
                    try {
                        return !TapCredentialModel.fromModel(stored).isExpired(now);
                    } catch (IllegalArgumentException e) {
                        return false;
                    }
                });
    }

    @Override
    public boolean isValid(RealmModel realm, UserModel user, CredentialInput input) {
        if (input == null || !supportsCredentialType(input.getType()) || input.getChallengeResponse() == null) {
            return false;
        }
        String typed = TapSecrets.normalise(input.getChallengeResponse());
        boolean plausible = TapSecrets.plausible(typed);
        long now = Time.currentTime();
        List<CredentialModel> stored = user.credentialManager()
                .getStoredCredentialsByTypeStream(TapCredentialModel.TYPE)
                .toList();
        for (CredentialModel candidate : stored) {
            TapCredentialModel tap;
            try {
                tap = TapCredentialModel.fromModel(candidate);
            } catch (IllegalArgumentException e) {
                LOG.warnf("Ignoring unreadable Temporary Access Pass %s of user %s", candidate.getId(), user.getId());
                continue;
            }
            if (tap.isExpired(now)) {
                user.credentialManager().removeStoredCredentialById(tap.getId());
                continue;
            }
            if (!plausible || tap.isNotYetValid(now)) {
                continue;
            }
            byte[] key = keyById(realm, tap.data().keyId());
            if (key == null) {
                LOG.warnf("Temporary Access Pass %s of user %s was hashed with key %s, which the realm no longer has",
                        tap.getId(), user.getId(), tap.data().keyId());
                continue;
            }
            if (!TapSecrets.matches(key, typed, tap.hash())) {
                continue;
            }
            if (tap.data().oneTime() && !user.credentialManager().removeStoredCredentialById(tap.getId())) {
                // Removal takes a row lock; losing it means a concurrent sign-in redeemed the pass.
                LOG.infof("One-time Temporary Access Pass %s of user %s was redeemed concurrently",
                        tap.getId(), user.getId());
                return false;
            }
            return true;
        }
        return false;
    }

    private KeyWrapper activeKey(RealmModel realm) {
        for (String algorithm : HMAC_ALGORITHMS) {
            try {
                KeyWrapper key = session.keys().getActiveKey(realm, KeyUse.SIG, algorithm);
                if (key != null && key.getSecretKey() != null && key.getKid() != null) {
                    return key;
                }
            } catch (RuntimeException e) {
                LOG.debugf("No active %s key in realm %s", algorithm, realm.getName());
            }
        }
        throw new IllegalStateException("realm " + realm.getName() + " has no active HMAC signing key");
    }

    private byte[] keyById(RealmModel realm, String kid) {
        for (String algorithm : HMAC_ALGORITHMS) {
            KeyWrapper key = session.keys().getKey(realm, kid, KeyUse.SIG, algorithm);
            if (key != null && key.getSecretKey() != null) {
                return key.getSecretKey().getEncoded();
            }
        }
        return null;
    }
}
