/* Mutual TLS between two C ends over loopback TCP, and from C to a Rust server.
 *
 *   mtls local         a server thread and a client in this process: echo, full duplex (one
 *                      thread reading while another writes on the same stream), and refusals
 *                      by either side's policy
 *   mtls remote PORT   a client of the Rust echo server the test driver runs on 127.0.0.1:PORT
 *
 * Environment: WA_TEST_SERVER_DIR / WA_TEST_SERVER_ID and WA_TEST_CLIENT_DIR / WA_TEST_CLIENT_ID
 * (credentials directories and their SPIFFE IDs), WA_TEST_TRUST_DOMAIN.
 */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include "wa_test.h"

static int listen_loopback(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    ASSERT(listen(fd, 4) == 0);
    socklen_t len = sizeof addr;
    ASSERT(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

static int connect_loopback(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons((uint16_t)port);
    ASSERT(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    return fd;
}

/* Reads exactly `len` bytes (or fails the test). */
static void read_exactly(wa_mtls_stream *s, unsigned char *buf, size_t len) {
    size_t got = 0;
    while (got < len) {
        size_t n = 0;
        CHECK(wa_mtls_stream_read(s, buf + got, len - got, &n));
        ASSERT(n > 0);
        got += n;
    }
}

struct server {
    const wa_mtls_config *config;
    int listener;
    wa_result accept_result;
    char peer[512];
    char error[1024];
    size_t echoed;
};

/* Accepts one connection and echoes everything until the client closes. */
static void *serve_one(void *arg) {
    struct server *s = arg;
    int fd = accept(s->listener, NULL, NULL);
    ASSERT(fd >= 0);
    wa_mtls_stream *stream = NULL;
    s->accept_result = wa_mtls_accept(s->config, fd, &stream);
    /* The stream works on its own duplicate: our descriptor can go at once. */
    close(fd);
    if (s->accept_result != WA_OK) {
        ASSERT(stream == NULL);
        wa_last_error_message(s->error, sizeof s->error);
        return NULL;
    }
    char *peer = NULL;
    CHECK(wa_mtls_stream_peer_spiffe_id(stream, &peer));
    snprintf(s->peer, sizeof s->peer, "%s", peer);
    wa_string_free(peer);
    unsigned char buf[4096];
    for (;;) {
        size_t n = 0;
        CHECK(wa_mtls_stream_read(stream, buf, sizeof buf, &n));
        if (n == 0) {
            break; /* clean close by the client */
        }
        CHECK(wa_mtls_stream_write(stream, buf, n));
        s->echoed += n;
    }
    CHECK(wa_mtls_stream_close(stream));
    wa_mtls_stream_free(stream);
    return NULL;
}

#define DUPLEX_MESSAGES 64
#define DUPLEX_SIZE 3000

struct reader {
    wa_mtls_stream *stream;
    unsigned char *got;
};

static void *read_all_echoes(void *arg) {
    struct reader *r = arg;
    read_exactly(r->stream, r->got, DUPLEX_MESSAGES * DUPLEX_SIZE);
    return NULL;
}

static wa_mtls_config *config_for(const wa_workload_identity *id, const char *policy) {
    const char *policies[] = {policy};
    wa_mtls_config *config = NULL;
    CHECK(wa_mtls_config_new(id, policies, 1, &config));
    return config;
}

static void local(void) {
    const char *server_id = wa_test_env("WA_TEST_SERVER_ID");
    const char *client_id = wa_test_env("WA_TEST_CLIENT_ID");
    char td[512];
    snprintf(td, sizeof td, "td:%s", wa_test_env("WA_TEST_TRUST_DOMAIN"));

    wa_workload_identity *server_identity = NULL, *client_identity = NULL;
    CHECK(wa_workload_identity_load(wa_test_env("WA_TEST_SERVER_DIR"), &server_identity));
    CHECK(wa_workload_identity_load(wa_test_env("WA_TEST_CLIENT_DIR"), &client_identity));
    wa_mtls_config *server_ok = config_for(server_identity, client_id);
    wa_mtls_config *server_strict =
        config_for(server_identity, "spiffe://elsewhere.test/ns/prod/sa/admin");
    wa_mtls_config *client_ok = config_for(client_identity, td);
    wa_mtls_config *client_strict =
        config_for(client_identity, "prefix:spiffe://elsewhere.test/ns");
    /* Configurations keep working after their identity is freed. */
    wa_workload_identity_free(server_identity);
    wa_workload_identity_free(client_identity);

    int port = 0;
    int listener = listen_loopback(&port);

    /* 1. Both sides allow each other: echo, then full duplex on one stream. */
    {
        struct server s = {server_ok, listener, WA_ERR_OTHER, "", "", 0};
        pthread_t t;
        ASSERT(pthread_create(&t, NULL, serve_one, &s) == 0);
        int fd = connect_loopback(port);
        wa_mtls_stream *stream = NULL;
        CHECK(wa_mtls_connect(client_ok, fd, &stream));
        close(fd);
        char *peer = NULL;
        CHECK(wa_mtls_stream_peer_spiffe_id(stream, &peer));
        ASSERT(strcmp(peer, server_id) == 0);
        wa_string_free(peer);

        CHECK(wa_mtls_stream_write(stream, (const uint8_t *)"ping", 4));
        unsigned char pong[4];
        read_exactly(stream, pong, 4);
        ASSERT(memcmp(pong, "ping", 4) == 0);

        static unsigned char sent[DUPLEX_MESSAGES * DUPLEX_SIZE];
        static unsigned char got[DUPLEX_MESSAGES * DUPLEX_SIZE];
        for (size_t i = 0; i < sizeof sent; i++) {
            sent[i] = (unsigned char)(i * 7 + 3);
        }
        struct reader r = {stream, got};
        pthread_t reader;
        ASSERT(pthread_create(&reader, NULL, read_all_echoes, &r) == 0);
        for (int m = 0; m < DUPLEX_MESSAGES; m++) {
            CHECK(wa_mtls_stream_write(stream, sent + m * DUPLEX_SIZE, DUPLEX_SIZE));
        }
        ASSERT(pthread_join(reader, NULL) == 0);
        ASSERT(memcmp(sent, got, sizeof sent) == 0);

        CHECK(wa_mtls_stream_close(stream));
        size_t n = 99;
        unsigned char byte;
        CHECK(wa_mtls_stream_read(stream, &byte, 1, &n));
        ASSERT(n == 0); /* the server closed cleanly after our close */
        wa_mtls_stream_free(stream);
        ASSERT(pthread_join(t, NULL) == 0);
        ASSERT(s.accept_result == WA_OK);
        ASSERT(strcmp(s.peer, client_id) == 0);
        ASSERT(s.echoed == 4 + sizeof sent);
    }

    /* 2. The client's policy refuses the server. */
    {
        struct server s = {server_ok, listener, WA_ERR_OTHER, "", "", 0};
        pthread_t t;
        ASSERT(pthread_create(&t, NULL, serve_one, &s) == 0);
        int fd = connect_loopback(port);
        wa_mtls_stream *stream = NULL;
        EXPECT_CODE(wa_mtls_connect(client_strict, fd, &stream), WA_ERR_VERIFICATION);
        ASSERT(stream == NULL);
        ASSERT_LAST_ERROR_CONTAINS(server_id);
        ASSERT_LAST_ERROR_CONTAINS("not authorized");
        close(fd);
        ASSERT(pthread_join(t, NULL) == 0);
        ASSERT(s.accept_result != WA_OK);
    }

    /* 3. The server's policy refuses the client: with TLS 1.3 the client learns it on read. */
    {
        struct server s = {server_strict, listener, WA_ERR_OTHER, "", "", 0};
        pthread_t t;
        ASSERT(pthread_create(&t, NULL, serve_one, &s) == 0);
        int fd = connect_loopback(port);
        wa_mtls_stream *stream = NULL;
        CHECK(wa_mtls_connect(client_ok, fd, &stream));
        close(fd);
        ASSERT(pthread_join(t, NULL) == 0);
        ASSERT(s.accept_result == WA_ERR_VERIFICATION);
        ASSERT(strstr(s.error, client_id) != NULL);
        unsigned char byte;
        size_t n = 0;
        EXPECT_CODE(wa_mtls_stream_read(stream, &byte, 1, &n), WA_ERR_REJECTED);
        wa_mtls_stream_free(stream);
    }

    /* 4. Not a socket. */
    {
        wa_mtls_stream *stream = NULL;
        EXPECT_CODE(wa_mtls_connect(client_ok, -1, &stream), WA_ERR_INVALID_ARGUMENT);
        EXPECT_CODE(wa_mtls_accept(server_ok, 1000000, &stream), WA_ERR_INVALID_ARGUMENT);
    }

    close(listener);
    wa_mtls_config_free(server_ok);
    wa_mtls_config_free(server_strict);
    wa_mtls_config_free(client_ok);
    wa_mtls_config_free(client_strict);
    printf("mtls local: ok\n");
}

static void remote(int port) {
    wa_workload_identity *identity = NULL;
    CHECK(wa_workload_identity_load(wa_test_env("WA_TEST_CLIENT_DIR"), &identity));
    wa_mtls_config *config = config_for(identity, wa_test_env("WA_TEST_SERVER_ID"));
    wa_workload_identity_free(identity);
    int fd = connect_loopback(port);
    wa_mtls_stream *stream = NULL;
    CHECK(wa_mtls_connect(config, fd, &stream));
    close(fd);
    const char *message = "hello from C";
    CHECK(wa_mtls_stream_write(stream, (const uint8_t *)message, strlen(message)));
    CHECK(wa_mtls_stream_close(stream));
    /* The Rust server answers "<client SPIFFE ID> said: <message>", then closes. */
    char reply[1024];
    size_t total = 0;
    for (;;) {
        size_t n = 0;
        CHECK(wa_mtls_stream_read(stream, (uint8_t *)reply + total, sizeof reply - 1 - total, &n));
        if (n == 0) {
            break;
        }
        total += n;
    }
    reply[total] = '\0';
    char expected[1024];
    snprintf(expected, sizeof expected, "%s said: %s", wa_test_env("WA_TEST_CLIENT_ID"), message);
    if (strcmp(reply, expected) != 0) {
        fprintf(stderr, "reply %s, expected %s\n", reply, expected);
        exit(1);
    }
    wa_mtls_stream_free(stream);
    wa_mtls_config_free(config);
    printf("mtls remote: ok\n");
}

/* Finding 5: a `td:` policy naming a SPIFFE ID with a path is refused, never read as the whole
 * trust domain; `td:spiffe://DOMAIN` (no path) still means the domain, end to end. */
static void finding_5_td_policy_with_a_path_is_refused(void) {
    const char *trust_domain = wa_test_env("WA_TEST_TRUST_DOMAIN");
    wa_workload_identity *server_identity = NULL, *client_identity = NULL;
    CHECK(wa_workload_identity_load(wa_test_env("WA_TEST_SERVER_DIR"), &server_identity));
    CHECK(wa_workload_identity_load(wa_test_env("WA_TEST_CLIENT_DIR"), &client_identity));

    char narrow[512];
    snprintf(narrow, sizeof narrow, "td:spiffe://%s/ns/admin", trust_domain);
    const char *policies[] = {"any", narrow};
    wa_mtls_config *config = NULL;
    EXPECT_CODE(wa_mtls_config_new(client_identity, policies + 1, 1, &config),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT(config == NULL);
    ASSERT_LAST_ERROR_CONTAINS("/ns/admin");
    EXPECT_CODE(wa_mtls_config_new(client_identity, policies, 2, &config),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT(config == NULL);
    wa_verifier *verifier = NULL;
    EXPECT_CODE(wa_verifier_new(client_identity, WA_PEER_IS_SERVER, policies + 1, 1, &verifier),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT(verifier == NULL);

    char whole[512];
    snprintf(whole, sizeof whole, "td:spiffe://%s", trust_domain);
    wa_mtls_config *server = config_for(server_identity, whole);
    wa_mtls_config *client = config_for(client_identity, wa_test_env("WA_TEST_SERVER_ID"));
    wa_workload_identity_free(server_identity);
    wa_workload_identity_free(client_identity);
    int port = 0;
    int listener = listen_loopback(&port);
    struct server s = {server, listener, WA_ERR_OTHER, "", "", 0};
    pthread_t t;
    ASSERT(pthread_create(&t, NULL, serve_one, &s) == 0);
    int fd = connect_loopback(port);
    wa_mtls_stream *stream = NULL;
    CHECK(wa_mtls_connect(client, fd, &stream));
    close(fd);
    CHECK(wa_mtls_stream_write(stream, (const uint8_t *)"ping", 4));
    unsigned char got[4];
    read_exactly(stream, got, sizeof got);
    ASSERT(memcmp(got, "ping", 4) == 0);
    CHECK(wa_mtls_stream_close(stream));
    wa_mtls_stream_free(stream);
    ASSERT(pthread_join(t, NULL) == 0);
    ASSERT(s.accept_result == WA_OK);
    ASSERT(strcmp(s.peer, wa_test_env("WA_TEST_CLIENT_ID")) == 0);
    close(listener);
    wa_mtls_config_free(server);
    wa_mtls_config_free(client);
    printf("mtls finding-5: ok\n");
}

/* Finding 9: a size no object can have (a negative number cast to size_t, say) is an
 * invalid-argument error, never trusted; the handles stay usable. */
static void finding_9_impossible_sizes_are_invalid_arguments(void) {
    wa_workload_identity *server_identity = NULL, *client_identity = NULL;
    CHECK(wa_workload_identity_load(wa_test_env("WA_TEST_SERVER_DIR"), &server_identity));
    CHECK(wa_workload_identity_load(wa_test_env("WA_TEST_CLIENT_DIR"), &client_identity));
    const char *policies[] = {"any"};
    wa_mtls_config *config = NULL;
    EXPECT_CODE(wa_mtls_config_new(client_identity, policies, SIZE_MAX, &config),
                WA_ERR_INVALID_ARGUMENT);
    ASSERT(config == NULL);
    ASSERT_LAST_ERROR_CONTAINS("policies");
    EXPECT_CODE(wa_mtls_config_new(client_identity, policies, (size_t)-1 / 8 + 1, &config),
                WA_ERR_INVALID_ARGUMENT);
    wa_verifier *verifier = NULL;
    EXPECT_CODE(wa_verifier_new(client_identity, WA_PEER_IS_SERVER, policies, SIZE_MAX, &verifier),
                WA_ERR_INVALID_ARGUMENT);
    CHECK(wa_verifier_new(client_identity, WA_PEER_IS_SERVER, policies, 1, &verifier));
    const uint8_t der[1] = {0x30};
    const uint8_t *ders[1] = {der};
    size_t lens[1] = {SIZE_MAX};
    char *id = NULL;
    EXPECT_CODE(wa_verifier_verify(verifier, ders, lens, SIZE_MAX, &id), WA_ERR_INVALID_ARGUMENT);
    EXPECT_CODE(wa_verifier_verify(verifier, ders, lens, 1, &id), WA_ERR_INVALID_ARGUMENT);
    ASSERT(id == NULL);
    ASSERT_LAST_ERROR_CONTAINS("ders[i]");
    wa_verifier_free(verifier);

    wa_mtls_config *server = config_for(server_identity, "any");
    wa_mtls_config *client = config_for(client_identity, "any");
    wa_workload_identity_free(server_identity);
    wa_workload_identity_free(client_identity);
    int port = 0;
    int listener = listen_loopback(&port);
    struct server s = {server, listener, WA_ERR_OTHER, "", "", 0};
    pthread_t t;
    ASSERT(pthread_create(&t, NULL, serve_one, &s) == 0);
    int fd = connect_loopback(port);
    wa_mtls_stream *stream = NULL;
    CHECK(wa_mtls_connect(client, fd, &stream));
    close(fd);
    unsigned char buf[8];
    size_t n = 1;
    EXPECT_CODE(wa_mtls_stream_read(stream, buf, SIZE_MAX, &n), WA_ERR_INVALID_ARGUMENT);
    ASSERT(n == 0);
    ASSERT_LAST_ERROR_CONTAINS("buf");
    EXPECT_CODE(wa_mtls_stream_write(stream, buf, (size_t)PTRDIFF_MAX + 1), WA_ERR_INVALID_ARGUMENT);
    /* Still usable. */
    CHECK(wa_mtls_stream_write(stream, (const uint8_t *)"ping", 4));
    read_exactly(stream, buf, 4);
    ASSERT(memcmp(buf, "ping", 4) == 0);
    CHECK(wa_mtls_stream_close(stream));
    wa_mtls_stream_free(stream);
    ASSERT(pthread_join(t, NULL) == 0);
    ASSERT(s.accept_result == WA_OK);
    ASSERT(s.echoed == 4);
    close(listener);
    wa_mtls_config_free(server);
    wa_mtls_config_free(client);
    printf("mtls finding-9: ok\n");
}

int main(int argc, char **argv) {
    if (argc > 2 && strcmp(argv[1], "remote") == 0) {
        remote(atoi(argv[2]));
    } else if (argc > 1 && strcmp(argv[1], "finding-5") == 0) {
        finding_5_td_policy_with_a_path_is_refused();
    } else if (argc > 1 && strcmp(argv[1], "finding-9") == 0) {
        finding_9_impossible_sizes_are_invalid_arguments();
    } else {
        local();
    }
    return 0;
}
