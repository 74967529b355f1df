/* Tokens from the emulator through the C API, the way a C program uses it.
 *
 *   token metadata     ADC finds the metadata server (GCE_METADATA_HOST = the emulator):
 *                      access tokens (cached, also from many threads), a scoped token, an ID
 *                      token, the Authorization header, project id, explain
 *   token file         a credentials file (WA_TEST_CREDENTIALS_FILE) whose token endpoint is the
 *                      emulator, plus bad files
 *   token unreachable  the metadata server address is a closed port: a transient transport error
 */
#include <pthread.h>
#include <time.h>

#include "wa_test.h"

#define THREADS 8
#define CALLS_PER_THREAD 200

struct worker {
    const wa_credentials *creds;
    const char *expected;
    int mismatches;
};

static void *hammer(void *arg) {
    struct worker *w = arg;
    for (int i = 0; i < CALLS_PER_THREAD; i++) {
        char *token = NULL;
        CHECK(wa_credentials_access_token(w->creds, NULL, &token, NULL));
        if (strcmp(token, w->expected) != 0) {
            w->mismatches++;
        }
        wa_string_free(token);
    }
    return NULL;
}

static void metadata(void) {
    wa_credentials *creds = NULL;
    CHECK(wa_credentials_new_default(&creds));
    ASSERT(creds != NULL);
    ASSERT(strcmp(wa_credentials_type(creds), "metadata_server") == 0);

    char *token = NULL;
    int64_t expires = 0;
    CHECK(wa_credentials_access_token(creds, NULL, &token, &expires));
    ASSERT(strlen(token) > 10);
    int64_t now = (int64_t)time(NULL);
    ASSERT(expires > now + 3000 && expires < now + 3700);

    /* Cached: the same token again, from this thread and from many at once. */
    char *again = NULL;
    CHECK(wa_credentials_access_token(creds, NULL, &again, NULL));
    ASSERT(strcmp(token, again) == 0);
    wa_string_free(again);

    pthread_t threads[THREADS];
    struct worker workers[THREADS];
    for (int i = 0; i < THREADS; i++) {
        workers[i] = (struct worker){creds, token, 0};
        ASSERT(pthread_create(&threads[i], NULL, hammer, &workers[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) {
        ASSERT(pthread_join(threads[i], NULL) == 0);
        ASSERT(workers[i].mismatches == 0);
    }

    /* Another scope set: its own cache, its own token. */
    char *scoped = NULL;
    CHECK(wa_credentials_access_token(
        creds, "https://www.googleapis.com/auth/userinfo.email, openid", &scoped, NULL));
    ASSERT(strlen(scoped) > 10 && strcmp(scoped, token) != 0);
    char *scoped_again = NULL;
    CHECK(wa_credentials_access_token(
        creds, "openid https://www.googleapis.com/auth/userinfo.email", &scoped_again, NULL));
    ASSERT(strcmp(scoped, scoped_again) == 0);
    wa_string_free(scoped);
    wa_string_free(scoped_again);
    EXPECT_CODE(wa_credentials_access_token(creds, " , ", &scoped, NULL), WA_ERR_INVALID_ARGUMENT);
    ASSERT(scoped == NULL);

    char *header = NULL;
    CHECK(wa_credentials_authorization_header(creds, &header));
    ASSERT(strncmp(header, "Bearer ", 7) == 0 && strcmp(header + 7, token) == 0);
    wa_string_free(header);

    char *id_token = NULL;
    CHECK(wa_credentials_id_token(creds, "https://backend.example.run.app", &id_token));
    int dots = 0;
    for (const char *p = id_token; *p; p++) {
        dots += *p == '.';
    }
    ASSERT(dots == 2);
    wa_string_free(id_token);
    EXPECT_CODE(wa_credentials_id_token(creds, "", &id_token), WA_ERR_INVALID_ARGUMENT);
    ASSERT_LAST_ERROR_CONTAINS("audience");

    char *project = NULL;
    CHECK(wa_credentials_project_id(creds, &project));
    ASSERT(project != NULL && strcmp(project, wa_test_env("WA_TEST_PROJECT")) == 0);
    wa_string_free(project);

    char *quota = (char *)"sentinel";
    CHECK(wa_credentials_quota_project_id(creds, &quota));
    ASSERT(quota == NULL);

    char *json = NULL;
    CHECK(wa_credentials_explain_json(creds, &json));
    ASSERT(strstr(json, "\"credential_type\":\"metadata_server\"") != NULL);
    ASSERT(strstr(json, wa_test_env("WA_TEST_PROJECT")) != NULL);
    wa_string_free(json);

    CHECK(wa_credentials_invalidate(creds));
    char *fresh = NULL;
    CHECK(wa_credentials_access_token(creds, NULL, &fresh, NULL));
    ASSERT(strcmp(fresh, token) != 0);
    wa_string_free(fresh);

    wa_string_free(token);
    wa_credentials_free(creds);
    printf("metadata: ok\n");
}

static void file(void) {
    wa_credentials *creds = NULL;
    CHECK(wa_credentials_new_from_file(wa_test_env("WA_TEST_CREDENTIALS_FILE"), &creds));
    ASSERT(strcmp(wa_credentials_type(creds), "authorized_user") == 0);
    char *token = NULL;
    CHECK(wa_credentials_access_token(creds, NULL, &token, NULL));
    ASSERT(strlen(token) > 10);
    char *quota = NULL;
    CHECK(wa_credentials_quota_project_id(creds, &quota));
    ASSERT(quota != NULL && strcmp(quota, "c-quota-project") == 0);
    wa_string_free(quota);
    wa_string_free(token);
    wa_credentials_free(creds);

    /* A file that is not there: the error names it. */
    wa_credentials *missing = (wa_credentials *)&creds; /* non-NULL garbage must be cleared */
    wa_result r = wa_credentials_new_from_file("/nonexistent/wa-test/credentials.json", &missing);
    ASSERT(r != WA_OK && missing == NULL);
    ASSERT_LAST_ERROR_CONTAINS("/nonexistent/wa-test/credentials.json");
    ASSERT(!wa_last_error_is_transient());

    /* Malformed JSON and an unknown type are invalid credentials. */
    EXPECT_CODE(wa_credentials_new_from_json("{\"type\": ", &creds), WA_ERR_INVALID_CREDENTIALS);
    EXPECT_CODE(wa_credentials_new_from_json("{\"type\": \"magic\"}", &creds),
                WA_ERR_INVALID_CREDENTIALS);
    ASSERT_LAST_ERROR_CONTAINS("magic");
    printf("file: ok\n");
}

static void unreachable(void) {
    wa_credentials *creds = NULL;
    CHECK(wa_credentials_new_default(&creds));
    char *token = NULL;
    EXPECT_CODE(wa_credentials_access_token(creds, NULL, &token, NULL), WA_ERR_TRANSPORT);
    ASSERT(token == NULL);
    ASSERT(wa_last_error_is_transient());
    ASSERT(wa_last_error_code() == WA_ERR_TRANSPORT);
    wa_credentials_free(creds);
    printf("unreachable: ok\n");
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "metadata";
    if (strcmp(mode, "metadata") == 0) {
        metadata();
    } else if (strcmp(mode, "file") == 0) {
        file();
    } else if (strcmp(mode, "unreachable") == 0) {
        unreachable();
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
