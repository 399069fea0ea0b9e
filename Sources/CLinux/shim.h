// Linux interfaces that Glibc's Swift module map leaves out: epoll and eventfd, for the
// event loops (WaakvlamSystem's Poller).
#include <sys/epoll.h>
#include <sys/eventfd.h>
