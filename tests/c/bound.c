/* Agent Identity certificate-bound tokens through the C API.
 *
 *   bound   ADC finds the metadata server (GCE_METADATA_HOST) and an agent-identity workload
 *           certificate (GOOGLE_API_CERTIFICATE_CONFIG). A plain token is refused; the bound
 *           token comes only with its certificate chain and fingerprint (WA_TEST_FINGERPRINT).
 *           Then the certificate is rotated (WA_TEST_ROTATED_CERT / _KEY renamed over
 *           WA_TEST_CERT / _KEY) and the next call returns a new token bound to
 *           WA_TEST_ROTATED_FINGERPRINT. Prints both tokens for the driver to check.
 */
#include <stdbool.h>
#include <stdio.h>

#include "wa_test.h"

int main(void) {
    const char *expected = wa_test_env("WA_TEST_FINGERPRINT");
    const char *rotated_expected = wa_test_env("WA_TEST_ROTATED_FINGERPRINT");

    wa_credentials *creds = NULL;
    CHECK(wa_credentials_new_default(&creds));
    bool bound = false;
    CHECK(wa_credentials_is_bound(creds, &bound));
    ASSERT(bound);

    /* No token without its certificate. */
    char *plain = NULL;
    EXPECT_CODE(wa_credentials_access_token(creds, NULL, &plain, NULL), WA_ERR_INVALID_ARGUMENT);
    ASSERT(plain == NULL);
    ASSERT_LAST_ERROR_CONTAINS("bound");
    EXPECT_CODE(wa_credentials_authorization_header(creds, &plain), WA_ERR_INVALID_ARGUMENT);
    ASSERT(plain == NULL);

    /* Every output is required: the token never goes out alone. */
    char *token = NULL, *chain = NULL, *fingerprint = NULL;
    EXPECT_CODE(wa_credentials_bound_access_token(creds, &token, NULL, &fingerprint, NULL),
                WA_ERR_NULL_POINTER);
    ASSERT(token == NULL && fingerprint == NULL);

    int64_t expires = 0;
    CHECK(wa_credentials_bound_access_token(creds, &token, &chain, &fingerprint, &expires));
    ASSERT(strcmp(fingerprint, expected) == 0);
    ASSERT(strncmp(chain, "-----BEGIN CERTIFICATE-----", 27) == 0);
    ASSERT(strstr(chain, "PRIVATE") == NULL);
    ASSERT(expires > 0);
    printf("token=%s\n", token);

    /* Cached: the same token. */
    char *again = NULL, *again_chain = NULL, *again_fp = NULL;
    CHECK(wa_credentials_bound_access_token(creds, &again, &again_chain, &again_fp, NULL));
    ASSERT(strcmp(again, token) == 0);
    wa_string_free(again);
    wa_string_free(again_chain);
    wa_string_free(again_fp);

    /* Rotation: the next call reads the new certificate and gets a token bound to it. */
    ASSERT(rename(wa_test_env("WA_TEST_ROTATED_KEY"), wa_test_env("WA_TEST_KEY")) == 0);
    ASSERT(rename(wa_test_env("WA_TEST_ROTATED_CERT"), wa_test_env("WA_TEST_CERT")) == 0);
    char *fresh = NULL, *fresh_chain = NULL, *fresh_fp = NULL;
    CHECK(wa_credentials_bound_access_token(creds, &fresh, &fresh_chain, &fresh_fp, NULL));
    ASSERT(strcmp(fresh_fp, rotated_expected) == 0);
    ASSERT(strcmp(fresh, token) != 0);
    ASSERT(strcmp(fresh_chain, chain) != 0);
    printf("rotated=%s\n", fresh);

    wa_string_free(fresh);
    wa_string_free(fresh_chain);
    wa_string_free(fresh_fp);
    wa_string_free(token);
    wa_string_free(chain);
    wa_string_free(fingerprint);
    wa_credentials_free(creds);
    printf("bound: ok\n");
    return 0;
}
