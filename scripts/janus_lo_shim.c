/* LD_PRELOAD shim for the relay benchmark's Janus baseline (scripts/bench_relay.py).
 *
 * Janus's ICE (libnice) skips loopback interfaces, so on a machine whose benchmark traffic
 * stays on 127.0.0.1 it gathers no usable candidate. This getifaddrs() returns only the IPv4
 * address of "lo", with IFF_LOOPBACK cleared, so that it looks like an ordinary interface;
 * every other interface is hidden. glibc allocates the whole list in one block that
 * freeifaddrs() frees through the first element, so the first element is kept as the list
 * head (its contents are overwritten with the kept entry) and the real freeifaddrs works.
 *
 * Built by the bench at run time: gcc -shared -fPIC -o shim.so janus_lo_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

int getifaddrs(struct ifaddrs **out) {
    static int (*real)(struct ifaddrs **) = NULL;
    if (real == NULL) {
        real = (int (*)(struct ifaddrs **))dlsym(RTLD_NEXT, "getifaddrs");
    }
    int rc = real(out);
    if (rc != 0 || *out == NULL) {
        return rc;
    }
    struct ifaddrs *head = *out, *kept = NULL;
    for (struct ifaddrs *ifa = head; ifa != NULL; ifa = ifa->ifa_next) {
        if (ifa->ifa_addr != NULL && ifa->ifa_addr->sa_family == AF_INET &&
            strcmp(ifa->ifa_name, "lo") == 0) {
            kept = ifa;
            break;
        }
    }
    if (kept == NULL) {
        return rc; /* no IPv4 loopback: leave the list alone */
    }
    if (kept != head) {
        struct ifaddrs copy = *kept;
        *head = copy;
    }
    head->ifa_next = NULL;
    head->ifa_flags &= ~IFF_LOOPBACK;
    return rc;
}
