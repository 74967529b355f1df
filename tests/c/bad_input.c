/* Bad input at the C boundary: NULL pointers, invalid UTF-8, _free(NULL), and the last-error
 * buffer contract. Every case must give an error code, never a crash. Needs no network. */
#include <pthread.h>

#include "wa_test.h"

/* Credentials that can be built without any network or environment. */
static const char *USER_JSON =
    "{\"type\": \"authorized_user\", \"client_id\": \"id\", \"client_secret\": \"secret\","
    " \"refresh_token\": \"1//refresh\", \"token_uri\": \"http://127.0.0.1:9/token\"}";

static void *fresh_thread_has_no_error(void *arg) {
    (void)arg;
    char buf[16] = "untouched";
    ASSERT(wa_last_error_message(buf, sizeof buf) == 0);
    ASSERT(buf[0] == '\0');
    ASSERT(wa_last_error_code() == WA_OK);
    ASSERT(!wa_last_error_is_transient());
    /* An error here stays on this thread. */
    EXPECT_CODE(wa_credentials_new_default(NULL), WA_ERR_NULL_POINTER);
    return NULL;
}

int main(void) {
    wa_credentials *creds = NULL;
    wa_workload_identity *identity = NULL;
    wa_mtls_stream *stream = NULL;
    char *s = NULL;

    /* NULL out-parameters and handles. */
    EXPECT_CODE(wa_credentials_new_default(NULL), WA_ERR_NULL_POINTER);
    ASSERT_LAST_ERROR_CONTAINS("out");
    EXPECT_CODE(wa_credentials_new_from_file(NULL, &creds), WA_ERR_NULL_POINTER);
    ASSERT(creds == NULL);
    ASSERT_LAST_ERROR_CONTAINS("path");
    EXPECT_CODE(wa_credentials_new_from_json(NULL, &creds), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_access_token(NULL, NULL, &s, NULL), WA_ERR_NULL_POINTER);
    ASSERT(s == NULL);
    EXPECT_CODE(wa_credentials_id_token(NULL, "aud", &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_authorization_header(NULL, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_quota_project_id(NULL, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_project_id(NULL, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_explain_json(NULL, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_invalidate(NULL), WA_ERR_NULL_POINTER);
    ASSERT(wa_credentials_type(NULL) == NULL);
    EXPECT_CODE(wa_workload_identity_load(NULL, NULL), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_workload_identity_spiffe_id(NULL, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_verifier_new(NULL, WA_PEER_IS_CLIENT, NULL, 0, NULL), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_verifier_verify(NULL, NULL, NULL, 0, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_mtls_config_new(NULL, NULL, 0, NULL), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_mtls_connect(NULL, 0, &stream), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_mtls_accept(NULL, 0, &stream), WA_ERR_NULL_POINTER);
    size_t n = 0;
    unsigned char byte;
    EXPECT_CODE(wa_mtls_stream_read(NULL, &byte, 1, &n), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_mtls_stream_write(NULL, &byte, 1), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_mtls_stream_peer_spiffe_id(NULL, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_mtls_stream_close(NULL), WA_ERR_NULL_POINTER);

    /* Invalid UTF-8 in string arguments. */
    EXPECT_CODE(wa_credentials_new_from_file("/tmp/\xff\xfe.json", &creds), WA_ERR_INVALID_UTF8);
    ASSERT_LAST_ERROR_CONTAINS("path");
    EXPECT_CODE(wa_credentials_new_from_json("{\"type\": \"\xc3\x28\"}", &creds),
                WA_ERR_INVALID_UTF8);
    EXPECT_CODE(wa_workload_identity_load("/var/\xe2\x82", &identity), WA_ERR_INVALID_UTF8);
    ASSERT(identity == NULL);

    /* With a real handle: NULL outputs, bad scopes and audiences. No request is made. */
    CHECK(wa_credentials_new_from_json(USER_JSON, &creds));
    EXPECT_CODE(wa_credentials_access_token(creds, NULL, NULL, NULL), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_access_token(creds, "scope\xff", &s, NULL), WA_ERR_INVALID_UTF8);
    ASSERT_LAST_ERROR_CONTAINS("scopes_or_null");
    EXPECT_CODE(wa_credentials_id_token(creds, NULL, &s), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_id_token(creds, "\x80", &s), WA_ERR_INVALID_UTF8);
    EXPECT_CODE(wa_credentials_id_token(creds, "  ", &s), WA_ERR_INVALID_ARGUMENT);
    ASSERT(strcmp(wa_credentials_type(creds), "authorized_user") == 0);
    wa_credentials_free(creds);

    /* _free(NULL) and wa_string_free(NULL) are no-ops. */
    wa_credentials_free(NULL);
    wa_workload_identity_free(NULL);
    wa_verifier_free(NULL);
    wa_mtls_config_free(NULL);
    wa_mtls_stream_free(NULL);
    wa_string_free(NULL);

    /* The last-error buffer: size query, truncation at a character boundary, NUL always. */
    EXPECT_CODE(wa_credentials_new_from_file(NULL, &creds), WA_ERR_NULL_POINTER);
    size_t needed = wa_last_error_message(NULL, 0);
    char *full = malloc(needed);
    ASSERT(full != NULL);
    ASSERT(wa_last_error_message(full, needed) == needed);
    ASSERT(strlen(full) == needed - 1);
    ASSERT(strcmp(full, "wa_credentials_new_from_file: `path` is NULL") == 0);
    char small[8];
    memset(small, 'x', sizeof small);
    ASSERT(wa_last_error_message(small, sizeof small) == needed);
    ASSERT(strlen(small) == 7 && strncmp(small, full, 7) == 0);
    char one[1] = {'x'};
    ASSERT(wa_last_error_message(one, 1) == needed && one[0] == '\0');
    ASSERT(wa_last_error_message(NULL, 100) == needed); /* NULL buffer: size only */
    free(full);
    ASSERT(wa_last_error_code() == WA_ERR_NULL_POINTER);
    ASSERT(!wa_last_error_is_transient());

    /* Per thread: a new thread has no error, and its error does not leak back here. */
    pthread_t t;
    ASSERT(pthread_create(&t, NULL, fresh_thread_has_no_error, NULL) == 0);
    ASSERT(pthread_join(t, NULL) == 0);
    ASSERT_LAST_ERROR_CONTAINS("wa_credentials_new_from_file");

    /* Names of codes, known and unknown; the version. */
    ASSERT(strcmp(wa_result_name(WA_OK), "WA_OK") == 0);
    ASSERT(strcmp(wa_result_name(WA_ERR_TRANSPORT), "WA_ERR_TRANSPORT") == 0);
    ASSERT(strcmp(wa_result_name(WA_ERR_SETUP), "WA_ERR_SETUP") == 0);
    ASSERT(WA_ERR_SETUP == 12); /* appended: the codes before it keep their numbers */
    ASSERT(WA_ERR_PRIVATE_KEY_HIDDEN == 11 && WA_ERR_NULL_POINTER == 100);
    ASSERT(strcmp(wa_result_name(12345), "WA_ERR_UNKNOWN") == 0);
    ASSERT(strcmp(wa_result_name(-1), "WA_ERR_UNKNOWN") == 0);
    ASSERT(strlen(wa_version()) > 0);
    /* Every code has its own name. */
    const wa_result all[] = {WA_OK, WA_ERR_CREDENTIALS_NOT_FOUND, WA_ERR_INVALID_CREDENTIALS,
                             WA_ERR_INVALID_ARGUMENT, WA_ERR_IO, WA_ERR_TRANSPORT, WA_ERR_HTTP,
                             WA_ERR_MALFORMED_RESPONSE, WA_ERR_REJECTED,
                             WA_ERR_NOT_ON_GOOGLE_CLOUD, WA_ERR_VERIFICATION,
                             WA_ERR_PRIVATE_KEY_HIDDEN, WA_ERR_SETUP,
                             WA_ERR_NULL_POINTER, WA_ERR_INVALID_UTF8, WA_ERR_PANIC, WA_ERR_OTHER};
    const size_t n_codes = sizeof all / sizeof all[0];
    for (size_t i = 0; i < n_codes; i++) {
        ASSERT(strncmp(wa_result_name(all[i]), "WA_", 3) == 0);
        ASSERT(strcmp(wa_result_name(all[i]), "WA_ERR_UNKNOWN") != 0);
        for (size_t j = 0; j < i; j++) {
            ASSERT(strcmp(wa_result_name(all[i]), wa_result_name(all[j])) != 0);
        }
    }

    /* The header's version macros are the library's version. */
    char version[64];
    snprintf(version, sizeof version, "%d.%d.%d", WA_VERSION_MAJOR, WA_VERSION_MINOR,
             WA_VERSION_PATCH);
    ASSERT(strcmp(version, WA_VERSION_STRING) == 0);
    ASSERT(strcmp(wa_version(), WA_VERSION_STRING) == 0);

    /* Deadlines: 0 is refused before anything else happens. */
    CHECK(wa_credentials_new_from_json(USER_JSON, &creds));
    s = (char *)"sentinel";
    EXPECT_CODE(wa_credentials_access_token_timeout(creds, NULL, 0, &s, NULL),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT(s == NULL);
    ASSERT_LAST_ERROR_CONTAINS("timeout_ms");
    EXPECT_CODE(wa_credentials_id_token_timeout(creds, "https://a.example", 0, &s),
                WA_ERR_INVALID_ARGUMENT);
    EXPECT_CODE(wa_credentials_access_token_timeout(NULL, NULL, 100, &s, NULL),
                WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_access_token_timeout(creds, " ", 100, &s, NULL),
                WA_ERR_INVALID_ARGUMENT);
    wa_credentials_free(creds);
    creds = NULL;

    printf("bad input: ok\n");
    return 0;
}
