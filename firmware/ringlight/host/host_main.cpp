// Host build of the ring-light firmware, for tests: the sketch's own code runs unchanged.
//
//   g++ -std=c++17 -O1 -I firmware/ringlight/host firmware/ringlight/host/host_main.cpp -o rl
//
// stdin/stdout are the serial port (give it the master side of a pseudo-terminal and open the
// slave with the Python driver). Timer5 is played from the monotonic clock, one call of the
// compare ISR per elapsed tick (phases never come out shorter than asked); SIGUSR1 is a
// rising edge on the trigger input. stderr gets a trace of every output change:
// "<us> PWM <pin> <value>" and "<us> TRIG <0|1>".
#include "Arduino.h"

#include "../ringlight.ino"  // one translation unit: the host loop sees the sketch's state

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

HostSerial Serial;

static void (*g_extIsr)(void) = nullptr;
static volatile sig_atomic_t g_extPending = 0;
static int g_pwm[64];
static uint8_t g_lastPortA = 0;
static uint64_t g_t0 = 0;
static unsigned char g_rx[4096];
static size_t g_rxHead = 0, g_rxTail = 0;

static uint64_t nowUs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void trace(const char *what, int a, int b) {
  if (b < 0)
    fprintf(stderr, "%llu %s %d\n", (unsigned long long)(nowUs() - g_t0), what, a);
  else
    fprintf(stderr, "%llu %s %d %d\n", (unsigned long long)(nowUs() - g_t0), what, a, b);
}

void noInterrupts() {}
void interrupts() {}
void pinMode(uint8_t, uint8_t) {}
void analogWrite(uint8_t pin, int value) {
  if (pin < 64 && g_pwm[pin] != value) {
    g_pwm[pin] = value;
    trace("PWM", pin, value);
  }
}
int digitalPinToInterrupt(uint8_t pin) { return pin; }
void attachInterrupt(int, void (*isr)(void), int) { g_extIsr = isr; }

static void pumpInput() {
  while (g_rxTail - g_rxHead < sizeof g_rx) {
    unsigned char buf[256];
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n <= 0) return;  // EAGAIN, or EIO while no host has the port open
    for (ssize_t i = 0; i < n && g_rxTail - g_rxHead < sizeof g_rx; i++)
      g_rx[g_rxTail++ % sizeof g_rx] = buf[i];
  }
}

static void writeAll(const char *s, size_t n) {
  while (n > 0) {
    ssize_t k = ::write(1, s, n);
    if (k > 0) {
      s += k;
      n -= (size_t)k;
    } else if (k < 0 && errno == EAGAIN) {
      struct pollfd p = {1, POLLOUT, 0};
      poll(&p, 1, 10);
    } else {
      return;  // nobody listening
    }
  }
}

void HostSerial::begin(unsigned long) {}
int HostSerial::available() {
  pumpInput();
  return (int)(g_rxTail - g_rxHead);
}
int HostSerial::read() {
  if (g_rxTail == g_rxHead) return -1;
  return g_rx[g_rxHead++ % sizeof g_rx];
}
void HostSerial::print(const char *s) { writeAll(s, strlen(s)); }
void HostSerial::print(char c) { writeAll(&c, 1); }
void HostSerial::print(unsigned char v) { print((unsigned long)v); }
void HostSerial::print(int v) { print((long)v); }
void HostSerial::print(unsigned int v) { print((unsigned long)v); }
void HostSerial::print(long v) {
  char b[24];
  snprintf(b, sizeof b, "%ld", v);
  print(b);
}
void HostSerial::print(unsigned long v) {
  char b[24];
  snprintf(b, sizeof b, "%lu", v);
  print(b);
}

static void onUsr1(int) { g_extPending = 1; }

static void tracePort() {
  if (PORTA != g_lastPortA) {
    g_lastPortA = PORTA;
    trace("TRIG", (PORTA & _BV(PA0)) ? 1 : 0, -1);
  }
}

int main() {
  g_t0 = nowUs();
  setvbuf(stderr, nullptr, _IOLBF, 0);
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
  signal(SIGUSR1, onUsr1);
  signal(SIGPIPE, SIG_IGN);
  setup();
  uint64_t nextTick = nowUs() + RL_TICK_US;
  for (;;) {
    uint8_t before = g_phase;
    loop();
    tracePort();
    if (g_extPending) {
      g_extPending = 0;
      if (g_extIsr) g_extIsr();
      tracePort();
    }
    uint64_t now = nowUs();
    if (before == PH_NONE && g_phase != PH_NONE) nextTick = now + RL_TICK_US;  // TCNT5 = 0
    if (g_phase == PH_NONE) {
      nextTick = now + RL_TICK_US;  // nothing timed: sleep until input (or 2 ms)
      struct pollfd p = {0, POLLIN, 0};
      poll(&p, 1, 2);
      if (p.revents & (POLLHUP | POLLERR)) usleep(2000);
    } else {
      // Catch up on elapsed ticks within the current phase, so a phase lasts its real time;
      // when the phase changes, the next one starts now with its full length. A slow or
      // loaded PC thus stretches a step a little but never shortens a pulse or a hold.
      uint8_t phase = g_phase;
      while (now >= nextTick && g_phase == phase && (TIMSK5 & _BV(OCIE5A))) {
        TIMER5_COMPA_vect();
        tracePort();
        nextTick += RL_TICK_US;
      }
      if (g_phase != phase) nextTick = now + RL_TICK_US;
      struct timespec ts = {0, 20000};
      nanosleep(&ts, nullptr);
    }
  }
}
