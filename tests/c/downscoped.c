/* Issue 11 at the C boundary: downscoped tokens (server-side and client-side) from metadata
 * server credentials, bad access boundaries refused with the field named, and the regional
 * access boundary header (x-allowed-locations) once the background lookup has answered. The
 * harness starts the emulator, then asks its check endpoint which boundary each printed token
 * carries. */
#include <time.h>

#include "wa_test.h"

static const char *BOUNDARY =
    "{\"accessBoundary\": {\"accessBoundaryRules\": [{"
    "\"availableResource\": \"//storage.googleapis.com/projects/_/buckets/c-bucket\","
    "\"availablePermissions\": [\"inRole:roles/storage.objectViewer\"],"
    "\"availabilityCondition\": {\"expression\": "
    "\"resource.name.startsWith('projects/_/buckets/c-bucket/objects/c-')\"}}]}}";

static char too_many[8192];
static char sts[1024];

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void bad_boundaries(wa_credentials *creds) {
    wa_downscoped *d = NULL;
    /* Eleven rules: the Security Token Service takes at most ten. */
    size_t n = (size_t)snprintf(too_many, sizeof too_many, "{\"accessBoundaryRules\": [");
    for (int i = 0; i < 11; i++) {
        n += (size_t)snprintf(too_many + n, sizeof too_many - n,
                              "%s{\"availableResource\": \"//storage.googleapis.com/b%d\","
                              " \"availablePermissions\": [\"inRole:roles/x\"]}",
                              i ? "," : "", i);
    }
    snprintf(too_many + n, sizeof too_many - n, "]}");
    EXPECT_CODE(wa_downscoped_new(creds, too_many, sts, false, &d), WA_ERR_INVALID_ARGUMENT);
    ASSERT(d == NULL);
    ASSERT_LAST_ERROR_CONTAINS("at most 10");
    EXPECT_CODE(wa_downscoped_new(creds,
                                  "{\"accessBoundaryRules\": [{\"availableResource\": \"r\","
                                  " \"availablePermissions\": [\"roles/viewer\"]}]}",
                                  sts, true, &d),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT_LAST_ERROR_CONTAINS("availablePermissions[0]");
    EXPECT_CODE(wa_downscoped_new(creds, "not json", sts, false, &d), WA_ERR_INVALID_ARGUMENT);
    ASSERT_LAST_ERROR_CONTAINS("not valid JSON");
    /* A condition client-side minting cannot compile is refused before any request. */
    EXPECT_CODE(wa_downscoped_new(creds,
                                  "{\"accessBoundaryRules\": [{\"availableResource\": \"r\","
                                  " \"availablePermissions\": [\"inRole:roles/x\"],"
                                  " \"availabilityCondition\": {\"expression\": "
                                  "\"resource.name.matches('x')\"}}]}",
                                  sts, true, &d),
                WA_ERR_INVALID_ARGUMENT);
    /* An STS endpoint that is plain HTTP to another machine is refused: no token goes there. */
    EXPECT_CODE(
        wa_downscoped_new(creds, BOUNDARY, "http://sts.example.com/v1/token", false, &d),
        WA_ERR_INVALID_CREDENTIALS);
    ASSERT_LAST_ERROR_CONTAINS("sts_endpoint");
    EXPECT_CODE(wa_downscoped_new(NULL, BOUNDARY, sts, false, &d), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_downscoped_new(creds, NULL, sts, false, &d), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_downscoped_access_token(NULL, NULL, NULL), WA_ERR_NULL_POINTER);
    wa_downscoped_free(NULL);
}

static void print_tokens(wa_credentials *creds, bool client_side, int count) {
    wa_downscoped *d = NULL;
    CHECK(wa_downscoped_new(creds, BOUNDARY, sts, client_side, &d));
    char *previous = NULL;
    for (int i = 0; i < count; i++) {
        char *token = NULL;
        int64_t expires = 0;
        CHECK(wa_downscoped_access_token(d, &token, &expires));
        ASSERT(token != NULL && strlen(token) > 20);
        ASSERT(expires > (int64_t)time(NULL) + 1800);
        if (previous != NULL) {
            /* Server-side: the cached token; client-side: a new one each time. */
            ASSERT((strcmp(previous, token) == 0) == !client_side);
            wa_string_free(previous);
        }
        printf("%s %s\n", client_side ? "client-side" : "server-side", token);
        previous = token;
    }
    wa_string_free(previous);
    wa_downscoped_free(d);
}

static void allowed_locations(wa_credentials *creds) {
    char *value = NULL;
    /* Never waited for: poll until the background lookup has answered. */
    for (int i = 0; i < 500 && value == NULL; i++) {
        CHECK(wa_credentials_allowed_locations(creds, NULL, &value));
        if (value == NULL) {
            sleep_ms(20);
        }
    }
    ASSERT(value != NULL);
    printf("x-allowed-locations %s\n", value);
    wa_string_free(value);
    CHECK(wa_credentials_allowed_locations(creds, "https://storage.googleapis.com/b/o", &value));
    ASSERT(value != NULL);
    wa_string_free(value);
    /* Regional endpoints and the STS host never carry it. */
    CHECK(wa_credentials_allowed_locations(
        creds, "https://storage.us-central1.rep.googleapis.com/b/o", &value));
    ASSERT(value == NULL);
    CHECK(wa_credentials_allowed_locations(creds, "https://sts.googleapis.com/v1/token", &value));
    ASSERT(value == NULL);
    EXPECT_CODE(wa_credentials_allowed_locations(NULL, NULL, &value), WA_ERR_NULL_POINTER);
    EXPECT_CODE(wa_credentials_allowed_locations(creds, NULL, NULL), WA_ERR_NULL_POINTER);
}

int main(void) {
    const char *emulator = wa_test_env("WA_TEST_EMULATOR_URL");
    snprintf(sts, sizeof sts, "%s/v1/token", emulator);
    wa_credentials *creds = NULL;
    CHECK(wa_credentials_new_default(&creds));
    bad_boundaries(creds);
    print_tokens(creds, false, 3);
    print_tokens(creds, true, 3);
    allowed_locations(creds);
    wa_credentials_free(creds);
    return 0;
}
