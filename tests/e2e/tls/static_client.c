// An HTTPS client with OpenSSL linked in statically (no libssl.so mapped): once a line comes on
// stdin, N keep-alive GETs of /static/<i> on one connection to 127.0.0.1:PORT, each reply read
// whole (Content-Length). Prints the number of 200 replies. Usage: static_client PORT N
#define _GNU_SOURCE  // strcasestr
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int read_reply(SSL *ssl) {
    char buf[8192];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof(buf) - 1) return -1;
        int n = SSL_read(ssl, buf + have, (int)(sizeof(buf) - 1 - have));
        if (n <= 0) return -1;
        have += (size_t)n;
        buf[have] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    int status = atoi(buf + 9);  // "HTTP/1.1 200 OK"
    const char *length = strcasestr(buf, "content-length:");
    long body = length ? atol(length + 15) : 0;
    long left = body - (long)(have - (size_t)(end + 4 - buf));
    while (left > 0) {
        int n = SSL_read(ssl, buf, left < (long)sizeof(buf) ? (int)left : (int)sizeof(buf));
        if (n <= 0) return -1;
        left -= n;
    }
    return status;
}

int main(int argc, char **argv) {
    if (argc != 3) return 2;
    int requests = atoi(argv[2]);
    char go[16];
    if (!fgets(go, sizeof(go), stdin)) return 1;  // the test starts it when the agent is ready
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) return 1;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    if (SSL_connect(ssl) != 1) return 1;
    int ok = 0;
    for (int i = 0; i < requests; i++) {
        char request[128];
        int len = snprintf(request, sizeof(request),
                           "GET /static/%d HTTP/1.1\r\nHost: localhost\r\n\r\n", i);
        if (SSL_write(ssl, request, len) != len) return 1;
        if (read_reply(ssl) == 200) ok++;
    }
    SSL_shutdown(ssl);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(ctx);
    printf("%d\n", ok);
    return 0;
}
