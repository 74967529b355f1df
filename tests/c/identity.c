/* A workload identity from a credentials directory, and the verifier a program with its own TLS
 * stack calls on the peer's DER chain.
 *
 * Environment (set by the test driver):
 *   WA_TEST_CREDENTIALS_DIR   a credentials directory as the node agent writes it
 *   WA_TEST_SPIFFE_ID         the SPIFFE ID of its certificate
 *   WA_TEST_PEER_DIR          leaf.der + intermediate.der of a peer of the same trust domain,
 *                             whose SPIFFE ID is WA_TEST_PEER_ID
 *   WA_TEST_FOREIGN_DIR       leaf.der + intermediate.der issued by a CA nobody trusts
 *   WA_TEST_LAYOUTS_DIR       gke/, combined/, spiffe-fs/ and no-key/: the identity of
 *                             WA_TEST_SPIFFE_ID in each credentials layout
 */
#include "wa_test.h"

struct chain {
    unsigned char *certs[2];
    size_t lens[2];
};

static struct chain read_chain(const char *dir) {
    struct chain c;
    const char *names[2] = {"leaf.der", "intermediate.der"};
    for (int i = 0; i < 2; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        c.certs[i] = wa_test_read_file(path, &c.lens[i]);
    }
    return c;
}

static void free_chain(struct chain *c) {
    free(c->certs[0]);
    free(c->certs[1]);
}

static wa_result verify(const wa_verifier *v, struct chain *c, size_t n, char **out) {
    const uint8_t *ders[2] = {c->certs[0], c->certs[1]};
    return wa_verifier_verify(v, ders, c->lens, n, out);
}

int main(void) {
    const char *dir = wa_test_env("WA_TEST_CREDENTIALS_DIR");
    const char *peer_id = wa_test_env("WA_TEST_PEER_ID");

    wa_workload_identity *identity = NULL;
    CHECK(wa_workload_identity_load(dir, &identity));
    char *id = NULL;
    CHECK(wa_workload_identity_spiffe_id(identity, &id));
    ASSERT(strcmp(id, wa_test_env("WA_TEST_SPIFFE_ID")) == 0);
    wa_string_free(id);

    /* A directory that does not exist: the error names it. */
    wa_workload_identity *missing = NULL;
    wa_result r = wa_workload_identity_load("/nonexistent/wa-test/creds", &missing);
    ASSERT(r == WA_ERR_IO || r == WA_ERR_INVALID_CREDENTIALS);
    ASSERT(missing == NULL);
    ASSERT_LAST_ERROR_CONTAINS("/nonexistent/wa-test/creds");

    /* The same identity through the SPIFFE Workload API, from `workload-auth agent`. */
    wa_workload_identity *via_agent = NULL;
    CHECK(wa_workload_identity_from_workload_api(wa_test_env("WA_TEST_AGENT"), &via_agent));
    CHECK(wa_workload_identity_spiffe_id(via_agent, &id));
    ASSERT(strcmp(id, wa_test_env("WA_TEST_SPIFFE_ID")) == 0);
    wa_string_free(id);
    wa_workload_identity_free(via_agent);
    /* NULL: SPIFFE_ENDPOINT_SOCKET names the agent. */
    via_agent = NULL;
    CHECK(wa_workload_identity_from_workload_api(NULL, &via_agent));
    wa_workload_identity_free(via_agent);
    /* Not a Workload API address: refused before connecting. */
    via_agent = NULL;
    r = wa_workload_identity_from_workload_api("http://127.0.0.1:1", &via_agent);
    ASSERT(r == WA_ERR_INVALID_ARGUMENT);
    ASSERT(via_agent == NULL);

    struct chain peer = read_chain(wa_test_env("WA_TEST_PEER_DIR"));
    struct chain foreign = read_chain(wa_test_env("WA_TEST_FOREIGN_DIR"));

    /* Members of the trust domain, or this one peer exactly: verified, ID returned. */
    char td_policy[512];
    snprintf(td_policy, sizeof td_policy, "td:%s", wa_test_env("WA_TEST_TRUST_DOMAIN"));
    const char *allow[] = {td_policy};
    wa_verifier *v = NULL;
    CHECK(wa_verifier_new(identity, WA_PEER_IS_CLIENT, allow, 1, &v));
    char *verified = NULL;
    CHECK(verify(v, &peer, 2, &verified));
    ASSERT(strcmp(verified, peer_id) == 0);
    wa_string_free(verified);
    /* Again: the same answer. */
    CHECK(verify(v, &peer, 2, &verified));
    ASSERT(strcmp(verified, peer_id) == 0);
    wa_string_free(verified);

    /* Without the intermediate the chain does not lead to the root. */
    EXPECT_CODE(verify(v, &peer, 1, &verified), WA_ERR_VERIFICATION);
    ASSERT(verified == NULL);
    /* A CA nobody trusts. */
    EXPECT_CODE(verify(v, &foreign, 2, &verified), WA_ERR_VERIFICATION);
    /* Not a certificate at all. */
    unsigned char garbage[] = {0x30, 0x03, 0x01, 0x01, 0xff};
    const uint8_t *garbage_ders[] = {garbage};
    size_t garbage_lens[] = {sizeof garbage};
    EXPECT_CODE(wa_verifier_verify(v, garbage_ders, garbage_lens, 1, &verified),
                WA_ERR_VERIFICATION);
    /* No certificate. */
    EXPECT_CODE(wa_verifier_verify(v, NULL, NULL, 0, &verified), WA_ERR_VERIFICATION);
    /* NULL arrays with a count. */
    EXPECT_CODE(wa_verifier_verify(v, NULL, peer.lens, 2, &verified), WA_ERR_NULL_POINTER);
    wa_verifier_free(v);

    /* A policy that names someone else refuses the peer, and says so. */
    const char *someone_else[] = {"spiffe://elsewhere.test/ns/x/sa/y", "prefix:spiffe://elsewhere.test/ns"};
    CHECK(wa_verifier_new(identity, WA_PEER_IS_CLIENT, someone_else, 2, &v));
    EXPECT_CODE(verify(v, &peer, 2, &verified), WA_ERR_VERIFICATION);
    ASSERT_LAST_ERROR_CONTAINS("not authorized");
    ASSERT_LAST_ERROR_CONTAINS(peer_id);
    wa_verifier_free(v);

    /* The exact ID, verifying the peer as a server. */
    const char *exact[] = {peer_id};
    CHECK(wa_verifier_new(identity, WA_PEER_IS_SERVER, exact, 1, &v));
    CHECK(verify(v, &peer, 2, &verified));
    wa_string_free(verified);
    wa_verifier_free(v);

    /* Bad verifier arguments. */
    EXPECT_CODE(wa_verifier_new(identity, 7, exact, 1, &v), WA_ERR_INVALID_ARGUMENT);
    ASSERT(v == NULL);
    EXPECT_CODE(wa_verifier_new(identity, WA_PEER_IS_CLIENT, exact, 0, &v),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT_LAST_ERROR_CONTAINS("any");
    const char *bad_policy[] = {"td:"};
    EXPECT_CODE(wa_verifier_new(identity, WA_PEER_IS_CLIENT, bad_policy, 1, &v),
                WA_ERR_INVALID_ARGUMENT);
    const char *not_utf8[] = {"spiffe://td/\xff"};
    EXPECT_CODE(wa_verifier_new(identity, WA_PEER_IS_CLIENT, not_utf8, 1, &v),
                WA_ERR_INVALID_UTF8);
    const char *null_policy[] = {NULL};
    EXPECT_CODE(wa_verifier_new(identity, WA_PEER_IS_CLIENT, null_policy, 1, &v),
                WA_ERR_NULL_POINTER);
    wa_mtls_config *config = NULL;
    EXPECT_CODE(wa_mtls_config_new(identity, NULL, 0, &config), WA_ERR_INVALID_ARGUMENT);

    /* Each layout loads and says which it is; a hidden key refuses mTLS with its own code. */
    const char *layouts[] = {"gke", "combined", "spiffe-fs", "no-key"};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", wa_test_env("WA_TEST_LAYOUTS_DIR"), layouts[i]);
        wa_workload_identity *each = NULL;
        CHECK(wa_workload_identity_load(path, &each));
        ASSERT(strcmp(wa_workload_identity_layout(each), layouts[i]) == 0);
        CHECK(wa_workload_identity_spiffe_id(each, &id));
        ASSERT(strcmp(id, wa_test_env("WA_TEST_SPIFFE_ID")) == 0);
        wa_string_free(id);
        const int hidden = strcmp(layouts[i], "no-key") == 0;
        ASSERT(wa_workload_identity_has_private_key(each) == !hidden);
        const char *any[] = {"any"};
        config = NULL;
        if (hidden) {
            EXPECT_CODE(wa_mtls_config_new(each, any, 1, &config), WA_ERR_PRIVATE_KEY_HIDDEN);
            ASSERT(config == NULL);
            ASSERT_LAST_ERROR_CONTAINS("private key hidden");
            ASSERT(strcmp(wa_result_name(WA_ERR_PRIVATE_KEY_HIDDEN), "WA_ERR_PRIVATE_KEY_HIDDEN") == 0);
        } else {
            CHECK(wa_mtls_config_new(each, any, 1, &config));
            wa_mtls_config_free(config);
        }
        wa_workload_identity_free(each);
    }
    ASSERT(wa_workload_identity_layout(NULL) == NULL);
    ASSERT(wa_workload_identity_has_private_key(NULL) == 0);

    free_chain(&peer);
    free_chain(&foreign);
    wa_workload_identity_free(identity);
    printf("identity: ok\n");
    return 0;
}
