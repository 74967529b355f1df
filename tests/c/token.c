/* Tokens from the emulator through the C API, the way a C program uses it.
 *
 *   token metadata     ADC finds the metadata server (GCE_METADATA_HOST = the emulator):
 *                      access tokens (cached, also from many threads), a scoped token, an ID
 *                      token, the Authorization header, project id, explain
 *   token file         a credentials file (WA_TEST_CREDENTIALS_FILE) whose token endpoint is the
 *                      emulator, plus bad files
 *   token deadline     the emulator answers slowly: calls with deadlines return in time
 *   token unreachable  the metadata server address is a closed port: a transient transport error
 *   token mds-mtls     the metadata server over mTLS in strict mode (WA_TEST_MDS_DIR)
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
    EXPECT_CODE(wa_credentials_new_from_file("/nonexistent/wa-test/credentials.json", &missing),
                WA_ERR_IO);
    ASSERT(missing == NULL);
    ASSERT_LAST_ERROR_CONTAINS("/nonexistent/wa-test/credentials.json");
    ASSERT(!wa_last_error_is_transient());

    /* So do the typed loaders. */
    EXPECT_CODE(wa_credentials_new_from_service_account_file(
                    "/nonexistent/wa-test/credentials.json", &missing),
                WA_ERR_IO);
    EXPECT_CODE(wa_credentials_new_from_file_typed("/nonexistent/wa-test/credentials.json",
                                                   "authorized_user", &missing),
                WA_ERR_IO);
    /* A directory is not a credentials file. */
    EXPECT_CODE(wa_credentials_new_from_file("/", &missing), WA_ERR_INVALID_CREDENTIALS);

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

static int64_t now_ms(void) {
    struct timespec ts;
    ASSERT(clock_gettime(CLOCK_MONOTONIC, &ts) == 0);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The emulator delays its next token and identity answers by seconds (WA_TEST_DELAY_MS): calls
 * with a shorter deadline return a transient transport error within WA_TEST_SLACK_MS of it
 * (50 natively; more under valgrind, which runs one thread at a time). */
static void deadline(void) {
    const int64_t delay = atoll(wa_test_env("WA_TEST_DELAY_MS"));
    const int64_t slack = atoll(wa_test_env("WA_TEST_SLACK_MS"));
    const uint32_t limit = 300;
    wa_credentials *creds = NULL;
    CHECK(wa_credentials_new_default(&creds));
    /* Warm up the runtime and the HTTP client on another endpoint first: under valgrind their
     * first use translates so much code that the waiting thread is not scheduled for seconds. */
    char *project = NULL;
    CHECK(wa_credentials_project_id(creds, &project));
    wa_string_free(project);

    char *token = (char *)"sentinel";
    int64_t start = now_ms();
    EXPECT_CODE(wa_credentials_access_token_timeout(creds, NULL, limit, &token, NULL),
                WA_ERR_TRANSPORT);
    int64_t took = now_ms() - start;
    ASSERT(token == NULL);
    ASSERT(wa_last_error_is_transient());
    ASSERT_LAST_ERROR_CONTAINS("300 ms");
    if (took < limit || took > limit + slack) {
        fprintf(stderr, "access token deadline of %u ms returned after %lld ms\n", limit,
                (long long)took);
        exit(1);
    }

    start = now_ms();
    EXPECT_CODE(wa_credentials_id_token_timeout(creds, "https://backend.example", limit, &token),
                WA_ERR_TRANSPORT);
    took = now_ms() - start;
    if (took < limit || took > limit + slack) {
        fprintf(stderr, "ID token deadline of %u ms returned after %lld ms\n", limit,
                (long long)took);
        exit(1);
    }

    /* A deadline longer than the delay: the token arrives. */
    int64_t expires = 0;
    CHECK(wa_credentials_access_token_timeout(creds, NULL, (uint32_t)(delay * 3), &token,
                                              &expires));
    ASSERT(strlen(token) > 10 && expires > (int64_t)time(NULL));
    /* Now cached: returned at once even with a 1 ms deadline. */
    char *cached = NULL;
    CHECK(wa_credentials_access_token_timeout(creds, NULL, 1, &cached, NULL));
    ASSERT(strcmp(cached, token) == 0);
    wa_string_free(cached);
    wa_string_free(token);
    wa_credentials_free(creds);
    printf("deadline: ok\n");
}

/* The metadata server over mTLS in strict mode (WA_TEST_MDS_DIR holds root.crt and client.key):
 * a token, and explain naming the transport; an unknown mode is an invalid argument and a
 * directory without the files fails, naming the file. */
static void mds_mtls(void) {
    wa_credentials *creds = NULL;
    CHECK(wa_credentials_new_default_mds_mtls("strict", wa_test_env("WA_TEST_MDS_DIR"), &creds));
    char *token = NULL;
    CHECK(wa_credentials_access_token(creds, NULL, &token, NULL));
    ASSERT(strlen(token) > 10);
    wa_string_free(token);
    char *json = NULL;
    CHECK(wa_credentials_explain_json(creds, &json));
    ASSERT(strstr(json, "\"name\":\"metadata_transport\",\"value\":\"mtls\"") != NULL);
    ASSERT(strstr(json, "\"name\":\"metadata_mtls_mode\",\"value\":\"strict\"") != NULL);
    wa_string_free(json);
    wa_credentials_free(creds);

    wa_credentials *none = NULL;
    EXPECT_CODE(wa_credentials_new_default_mds_mtls("sometimes", NULL, &none), WA_ERR_INVALID_ARGUMENT);
    ASSERT(none == NULL);
    ASSERT_LAST_ERROR_CONTAINS("sometimes");
    EXPECT_CODE(wa_credentials_new_default_mds_mtls("strict", "/nonexistent/wa-mds", &none),
                WA_ERR_INVALID_CREDENTIALS);
    ASSERT_LAST_ERROR_CONTAINS("/nonexistent/wa-mds/root.crt");
    printf("mds-mtls: ok\n");
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "metadata";
    if (strcmp(mode, "metadata") == 0) {
        metadata();
    } else if (strcmp(mode, "file") == 0) {
        file();
    } else if (strcmp(mode, "deadline") == 0) {
        deadline();
    } else if (strcmp(mode, "unreachable") == 0) {
        unreachable();
    } else if (strcmp(mode, "mds-mtls") == 0) {
        mds_mtls();
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
