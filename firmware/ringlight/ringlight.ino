/*
 * Dark-field ring light controller -- reference firmware, protocol v1.
 *
 * Board:   Arduino Mega 2560 (ATmega2560, 16 MHz). Pins 2..13 are the twelve hardware-PWM
 *          outputs, one per LED facet driver (constant-current driver with a PWM/enable input).
 *          An Uno-class board has only six PWM pins: drive the facets through a PCA9685 there.
 * Protocol: docs/ring-light-protocol.md. One ASCII command line per request (LF or CR ends it),
 *          one reply line per command: "OK <COMMAND> ..." or "ERR <code> <NAME> <detail>",
 *          plus unsolicited "EV ..." lines. 115200 8N1.
 * Timing:  Timer5 (unused by the PWM pins above) interrupts every RL_TICK_US microseconds and
 *          runs each sequence step: facets on -> settle -> trigger pulse -> hold -> facets off.
 *          A step starts from the TRIG command, from a rising edge on the trigger input, or
 *          (RUN) from this timer, one step per period, with no host round trip.
 *
 * The Python side (rig/ringlight_protocol.py) holds the same constants;
 * tests/test_ringlight_firmware.py parses this file and fails when they disagree.
 */
#include <Arduino.h>
#include <avr/wdt.h>
#include <stdlib.h>
#include <string.h>

// ==== protocol constants (must match rig/ringlight_protocol.py) ====
#define RL_DEVICE_NAME "DF-RINGLIGHT"
#define RL_FIRMWARE_VERSION "1.1.0"
#define RL_PROTOCOL_VERSION 1
#define RL_BAUDRATE 115200
#define RL_NUM_FACETS 12
#define RL_NUM_STATES 6
#define RL_LEVEL_MAX 255
#define RL_DEFAULT_LEVEL 255
#define RL_MAX_LINE 96
#define RL_MAX_SEQUENCE 32
#define RL_TICK_US 50
#define RL_DEFAULT_SETTLE_US 200
#define RL_DEFAULT_PULSE_US 100
#define RL_DEFAULT_HOLD_US 30000
#define RL_SETTLE_MAX_US 100000
#define RL_PULSE_MAX_US 100000
#define RL_HOLD_MAX_US 10000000
#define RL_PERIOD_MAX_US 10000000

#define RL_ERR_UNKNOWN_COMMAND 1
#define RL_ERR_BAD_ARGUMENT 2
#define RL_ERR_OUT_OF_RANGE 3
#define RL_ERR_LINE_TOO_LONG 4
#define RL_ERR_BUSY 5
#define RL_ERR_NOT_ARMED 6
#define RL_ERR_ARMED 7
#define RL_ERR_BAD_CHARACTER 8

static const char *const ERR_NAMES[] = {
  "",                 // 0: unused
  "UNKNOWN_COMMAND",  // 1
  "BAD_ARGUMENT",     // 2
  "OUT_OF_RANGE",     // 3
  "LINE_TOO_LONG",    // 4
  "BUSY",             // 5
  "NOT_ARMED",        // 6
  "ARMED",            // 7
  "BAD_CHARACTER",    // 8
};
// ==== end of protocol constants ====

// ---- pins ----
static const uint8_t FACET_PINS[RL_NUM_FACETS] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13};
#define PIN_TRIG_OUT 22          // PA0: camera trigger (to the camera's Line1 opto input)
#define PIN_TRIG_IN 19           // INT2: external trigger input (PLC / encoder), rising edge
#define TRIG_OUT_HIGH() (PORTA |= _BV(PA0))
#define TRIG_OUT_LOW() (PORTA &= ~_BV(PA0))
#define NO_STATE 0xFF
#define MAX_ARGS (RL_MAX_SEQUENCE + 2)

enum Mode : uint8_t { MODE_IDLE, MODE_LIT, MODE_ARMED, MODE_BUSY };
static const char *const MODE_NAMES[] = {"IDLE", "LIT", "ARMED", "BUSY"};
enum Phase : uint8_t { PH_NONE, PH_SETTLE, PH_PULSE, PH_HOLD, PH_WAIT };

// ---- state shared with the interrupts ----
static uint8_t g_levels[RL_NUM_FACETS];
static uint8_t g_seq[RL_MAX_SEQUENCE];
static volatile uint8_t g_seqLen = 0;
static volatile uint8_t g_step = 0;          // steps fired in this sequence
static volatile uint8_t g_mode = MODE_IDLE;
static volatile uint8_t g_litState = NO_STATE;
static volatile uint8_t g_phase = PH_NONE;
static volatile uint32_t g_ticksLeft = 0;
static volatile uint32_t g_triggers = 0;
static volatile uint32_t g_overruns = 0;
static uint32_t g_settleUs = RL_DEFAULT_SETTLE_US, g_pulseUs = RL_DEFAULT_PULSE_US,
                g_holdUs = RL_DEFAULT_HOLD_US;
static volatile uint32_t g_settleTicks, g_pulseTicks, g_holdTicks;
static volatile bool g_run = false;          // RUN: the board fires the remaining steps itself
static volatile uint32_t g_gapTicks = 0;     // RUN: dark ticks between a step's end and the next

#define EVF_HW_TRIG 0x01
#define EVF_DONE 0x02
#define EVF_OVERRUN 0x04
static volatile uint8_t g_events = 0;
static volatile uint8_t g_evStep = 0, g_evState = 0, g_ovStep = 0, g_doneLen = 0;

// ---- serial line buffer ----
static char g_line[RL_MAX_LINE];
static uint8_t g_len = 0;
static bool g_overflow = false, g_badChar = false;

static uint32_t ticksFor(uint32_t us) { return (us + RL_TICK_US - 1) / RL_TICK_US; }

// Set the PWM outputs for a state (NO_STATE: all dark). Call with interrupts disabled.
static void applyLights(uint8_t state) {
  for (uint8_t f = 0; f < RL_NUM_FACETS; f++) {
    bool on = state != NO_STATE && (f == state || f == state + RL_NUM_STATES);
    analogWrite(FACET_PINS[f], on ? g_levels[f] : 0);
  }
}

// Start the next step of the armed sequence. Interrupts disabled (ISR or cli()).
static void startStep() {
  uint8_t state = g_seq[g_step];
  g_step++;
  g_triggers++;
  g_mode = MODE_BUSY;
  g_litState = state;
  applyLights(state);
  TCNT5 = 0;                      // align the tick to the step start
  TIFR5 = _BV(OCF5A);
  if (g_settleTicks == 0) {
    TRIG_OUT_HIGH();
    g_phase = PH_PULSE;
    g_ticksLeft = g_pulseTicks;
  } else {
    g_phase = PH_SETTLE;
    g_ticksLeft = g_settleTicks;
  }
}

static void finishStep() {
  g_phase = PH_NONE;
  TRIG_OUT_LOW();
  g_litState = NO_STATE;
  applyLights(NO_STATE);
  if (g_step >= g_seqLen) {
    g_run = false;
    g_mode = MODE_IDLE;
    g_doneLen = g_seqLen;
    g_events |= EVF_DONE;
  } else if (g_run) {               // stays BUSY, dark, until the next step of the run
    if (g_gapTicks == 0) {
      startStep();
    } else {
      g_phase = PH_WAIT;
      g_ticksLeft = g_gapTicks;
    }
  } else {
    g_mode = MODE_ARMED;
  }
}

// Abort any step and go dark. Interrupts disabled.
static void abortAll() {
  g_run = false;
  g_phase = PH_NONE;
  TRIG_OUT_LOW();
  g_litState = NO_STATE;
  applyLights(NO_STATE);
  g_mode = MODE_IDLE;
}

ISR(TIMER5_COMPA_vect) {
  if (g_phase == PH_NONE) return;
  if (--g_ticksLeft != 0) return;
  switch (g_phase) {
    case PH_SETTLE:
      TRIG_OUT_HIGH();
      g_phase = PH_PULSE;
      g_ticksLeft = g_pulseTicks;
      break;
    case PH_PULSE:
      TRIG_OUT_LOW();
      g_phase = PH_HOLD;
      g_ticksLeft = g_holdTicks - g_pulseTicks;    // hold counts from the rising edge
      if (g_ticksLeft == 0) finishStep();
      break;
    case PH_HOLD:
      finishStep();
      break;
    case PH_WAIT:
      startStep();
      break;
  }
}

static void onTriggerInput() {            // external trigger edge (INT2)
  if (g_mode == MODE_ARMED) {
    startStep();
    g_evStep = g_step - 1;
    g_evState = g_seq[g_evStep];
    g_events |= EVF_HW_TRIG;
  } else if (g_mode == MODE_BUSY) {
    g_overruns++;
    g_ovStep = g_step;
    g_events |= EVF_OVERRUN;
  }
}

static void setupTimer5() {
  noInterrupts();
  TCCR5A = 0;
  TCCR5B = _BV(WGM52) | _BV(CS51);        // CTC, prescaler 8: 2 MHz
  OCR5A = (F_CPU / 8 / 1000000UL) * RL_TICK_US - 1;
  TCNT5 = 0;
  TIMSK5 = _BV(OCIE5A);
  interrupts();
}

static void setTiming(uint32_t settle, uint32_t pulse, uint32_t hold) {
  g_settleTicks = ticksFor(settle);
  g_pulseTicks = ticksFor(pulse);
  g_holdTicks = ticksFor(hold);
  g_settleUs = g_settleTicks * RL_TICK_US;
  g_pulseUs = g_pulseTicks * RL_TICK_US;
  g_holdUs = g_holdTicks * RL_TICK_US;
}

// ---- replies ----
static void replyErr(uint8_t code, const char *detail) {
  Serial.print(F("ERR "));
  Serial.print(code);
  Serial.print(' ');
  Serial.print(ERR_NAMES[code]);
  if (detail && detail[0]) {
    Serial.print(' ');
    Serial.print(detail);
  }
  Serial.print(F("\r\n"));
}

static void replyOk(const char *command) {
  Serial.print(F("OK "));
  Serial.print(command);
}

static void endLine() { Serial.print(F("\r\n")); }

// Parse decimal digits only. Returns false when not a number; more than 9 digits reads as
// 0xFFFFFFFF so the range check reports OUT_OF_RANGE.
static bool parseUint(const char *s, uint32_t *out) {
  if (!*s) return false;
  uint8_t n = 0;
  uint32_t v = 0;
  for (const char *p = s; *p; p++) {
    if (*p < '0' || *p > '9') return false;
    if (++n <= 9) v = v * 10 + (uint32_t)(*p - '0');
  }
  *out = n > 9 ? 0xFFFFFFFFUL : v;
  return true;
}

// Argument check helper: returns false after replying the error.
static bool argUint(const char *s, uint32_t lo, uint32_t hi, const char *what, uint32_t *out) {
  char detail[40];
  if (!parseUint(s, out)) {
    snprintf(detail, sizeof detail, "%s is not a number", what);
    replyErr(RL_ERR_BAD_ARGUMENT, detail);
    return false;
  }
  if (*out < lo || *out > hi) {
    snprintf(detail, sizeof detail, "%s must be %lu..%lu", what, (unsigned long)lo,
             (unsigned long)hi);
    replyErr(RL_ERR_OUT_OF_RANGE, detail);
    return false;
  }
  return true;
}

static bool nargs(uint8_t argc, uint8_t a, uint8_t b) {
  if (argc == a || argc == b) return true;
  replyErr(RL_ERR_BAD_ARGUMENT, "wrong number of arguments");
  return false;
}

static bool notBusy() {
  if (g_mode != MODE_BUSY) return true;
  replyErr(RL_ERR_BUSY, "step in progress");
  return false;
}

// ---- commands (argv[0] is the first argument, the command word is not included) ----
static void cmdId(uint8_t argc, char **argv) {
  if (!nargs(argc, 0, 0)) return;
  replyOk("ID");
  Serial.print(F(" " RL_DEVICE_NAME " " RL_FIRMWARE_VERSION " PROTO="));
  Serial.print(RL_PROTOCOL_VERSION);
  Serial.print(F(" FACETS="));
  Serial.print(RL_NUM_FACETS);
  Serial.print(F(" STATES="));
  Serial.print(RL_NUM_STATES);
  endLine();
}

static void cmdStatus(uint8_t argc, char **argv) {
  if (!nargs(argc, 0, 0)) return;
  noInterrupts();
  uint8_t mode = g_mode, lit = g_litState, step = g_step, len = g_seqLen;
  uint32_t trigs = g_triggers, ovr = g_overruns;
  interrupts();
  replyOk("STATUS");
  Serial.print(F(" MODE="));
  Serial.print(MODE_NAMES[mode]);
  Serial.print(F(" STATE="));
  if (lit == NO_STATE) Serial.print('-'); else Serial.print(lit);
  Serial.print(F(" STEP="));
  Serial.print(step);
  Serial.print(F(" N="));
  Serial.print(len);
  Serial.print(F(" TRIGS="));
  Serial.print(trigs);
  Serial.print(F(" OVR="));
  Serial.print(ovr);
  endLine();
}

static void cmdLevel(uint8_t argc, char **argv) {
  uint32_t facet, level;
  if (!nargs(argc, 1, 2)) return;
  if (!argUint(argv[0], 0, RL_NUM_FACETS - 1, "facet", &facet)) return;
  if (argc == 2) {
    if (!argUint(argv[1], 0, RL_LEVEL_MAX, "level", &level)) return;
    if (!notBusy()) return;
    noInterrupts();
    g_levels[facet] = (uint8_t)level;
    applyLights(g_litState);
    interrupts();
  }
  replyOk("LEVEL");
  Serial.print(' ');
  Serial.print(facet);
  Serial.print(' ');
  Serial.print(g_levels[facet]);
  endLine();
}

static void cmdLevels(uint8_t argc, char **argv) {
  uint32_t values[RL_NUM_FACETS];
  if (!nargs(argc, 0, RL_NUM_FACETS)) return;
  if (argc) {
    for (uint8_t f = 0; f < RL_NUM_FACETS; f++)
      if (!argUint(argv[f], 0, RL_LEVEL_MAX, "level", &values[f])) return;
    if (!notBusy()) return;
    noInterrupts();
    for (uint8_t f = 0; f < RL_NUM_FACETS; f++) g_levels[f] = (uint8_t)values[f];
    applyLights(g_litState);
    interrupts();
  }
  replyOk("LEVELS");
  for (uint8_t f = 0; f < RL_NUM_FACETS; f++) {
    Serial.print(' ');
    Serial.print(g_levels[f]);
  }
  endLine();
}

static void cmdState(uint8_t argc, char **argv) {
  uint32_t state;
  if (!nargs(argc, 1, 1)) return;
  if (!argUint(argv[0], 0, RL_NUM_STATES - 1, "state", &state)) return;
  if (!notBusy()) return;
  if (g_mode == MODE_ARMED) {
    replyErr(RL_ERR_ARMED, "sequence armed");
    return;
  }
  noInterrupts();
  g_mode = MODE_LIT;
  g_litState = (uint8_t)state;
  applyLights(g_litState);
  interrupts();
  replyOk("STATE");
  Serial.print(' ');
  Serial.print(state);
  endLine();
}

static void cmdOff(uint8_t argc, char **argv) {
  if (!nargs(argc, 0, 0)) return;
  noInterrupts();
  abortAll();
  g_seqLen = 0;
  g_step = 0;
  interrupts();
  replyOk("OFF");
  endLine();
}

static void cmdArm(uint8_t argc, char **argv) {
  uint32_t n, s;
  uint8_t seq[RL_MAX_SEQUENCE];
  if (argc < 1) {
    replyErr(RL_ERR_BAD_ARGUMENT, "wrong number of arguments");
    return;
  }
  if (!argUint(argv[0], 1, RL_MAX_SEQUENCE, "sequence length", &n)) return;
  if (argc == 1) {
    for (uint8_t i = 0; i < n; i++) seq[i] = i % RL_NUM_STATES;
  } else if (argc == 1 + n) {
    for (uint8_t i = 0; i < n; i++) {
      if (!argUint(argv[1 + i], 0, RL_NUM_STATES - 1, "state", &s)) return;
      seq[i] = (uint8_t)s;
    }
  } else {
    replyErr(RL_ERR_BAD_ARGUMENT, "wrong number of arguments");
    return;
  }
  if (!notBusy()) return;
  noInterrupts();
  memcpy(g_seq, seq, n);
  g_seqLen = (uint8_t)n;
  g_step = 0;
  g_litState = NO_STATE;
  applyLights(NO_STATE);
  g_mode = MODE_ARMED;
  interrupts();
  replyOk("ARM");
  Serial.print(' ');
  Serial.print(n);
  for (uint8_t i = 0; i < n; i++) {
    Serial.print(' ');
    Serial.print(seq[i]);
  }
  endLine();
}

static void cmdTrig(uint8_t argc, char **argv) {
  if (!nargs(argc, 0, 0)) return;
  noInterrupts();
  uint8_t mode = g_mode;
  uint8_t step = g_step, state = 0;
  if (mode == MODE_ARMED) {
    state = g_seq[step];
    startStep();
  }
  interrupts();
  if (mode == MODE_BUSY) {
    replyErr(RL_ERR_BUSY, "step in progress");
    return;
  }
  if (mode != MODE_ARMED) {
    replyErr(RL_ERR_NOT_ARMED, "no sequence armed");
    return;
  }
  replyOk("TRIG");
  Serial.print(' ');
  Serial.print(step);
  Serial.print(' ');
  Serial.print(state);
  endLine();
}

// RUN <period_us>: fire every remaining step of the armed sequence, one per period, from the
// board's own timer (no host round trip per frame). Replies as the first step starts.
static void cmdRun(uint8_t argc, char **argv) {
  uint32_t period;
  if (!nargs(argc, 1, 1)) return;
  if (!argUint(argv[0], 1, RL_PERIOD_MAX_US, "period", &period)) return;
  uint32_t ticks = ticksFor(period);
  noInterrupts();
  uint8_t mode = g_mode;
  uint32_t stepTicks = g_settleTicks + g_holdTicks;
  uint8_t left = g_seqLen - g_step;
  bool fits = ticks >= stepTicks;
  if (mode == MODE_ARMED && fits) {
    g_gapTicks = ticks - stepTicks;
    g_run = true;
    startStep();
  }
  interrupts();
  if (mode == MODE_BUSY) {
    replyErr(RL_ERR_BUSY, "step in progress");
    return;
  }
  if (mode != MODE_ARMED) {
    replyErr(RL_ERR_NOT_ARMED, "no sequence armed");
    return;
  }
  if (!fits) {
    replyErr(RL_ERR_OUT_OF_RANGE, "period shorter than settle + hold");
    return;
  }
  replyOk("RUN");
  Serial.print(' ');
  Serial.print(left);
  Serial.print(' ');
  Serial.print(ticks * RL_TICK_US);
  endLine();
}

static void cmdDisarm(uint8_t argc, char **argv) {
  if (!nargs(argc, 0, 0)) return;
  noInterrupts();
  if (g_mode == MODE_ARMED || g_mode == MODE_BUSY) abortAll();
  g_seqLen = 0;
  g_step = 0;
  interrupts();
  replyOk("DISARM");
  endLine();
}

static void cmdTiming(uint8_t argc, char **argv) {
  uint32_t settle, pulse, hold;
  if (!nargs(argc, 0, 3)) return;
  if (argc) {
    if (!argUint(argv[0], 0, RL_SETTLE_MAX_US, "settle", &settle)) return;
    if (!argUint(argv[1], 1, RL_PULSE_MAX_US, "pulse", &pulse)) return;
    if (!argUint(argv[2], pulse, RL_HOLD_MAX_US, "hold", &hold)) return;
    if (!notBusy()) return;
    noInterrupts();
    setTiming(settle, pulse, hold);
    interrupts();
  }
  replyOk("TIMING");
  Serial.print(' ');
  Serial.print(g_settleUs);
  Serial.print(' ');
  Serial.print(g_pulseUs);
  Serial.print(' ');
  Serial.print(g_holdUs);
  endLine();
}

typedef void (*Handler)(uint8_t argc, char **argv);
struct CommandEntry {
  const char *name;
  Handler fn;
};
static const CommandEntry COMMANDS[] = {
  {"ID", cmdId},
  {"STATUS", cmdStatus},
  {"LEVEL", cmdLevel},
  {"LEVELS", cmdLevels},
  {"STATE", cmdState},
  {"OFF", cmdOff},
  {"ARM", cmdArm},
  {"TRIG", cmdTrig},
  {"RUN", cmdRun},
  {"DISARM", cmdDisarm},
  {"TIMING", cmdTiming},
};

static void execute(char *line) {
  char *argv[MAX_ARGS + 1];
  uint8_t argc = 0;
  char *name = strtok(line, " ");
  if (!name) return;
  char *tok;
  while ((tok = strtok(NULL, " ")) != NULL) {
    if (argc == MAX_ARGS + 1) break;
    argv[argc++] = tok;
  }
  for (uint8_t i = 0; i < sizeof COMMANDS / sizeof COMMANDS[0]; i++) {
    if (strcmp(name, COMMANDS[i].name) == 0) {
      if (argc > MAX_ARGS) {
        replyErr(RL_ERR_BAD_ARGUMENT, "wrong number of arguments");
        return;
      }
      COMMANDS[i].fn(argc, argv);
      return;
    }
  }
  char detail[21];
  strncpy(detail, name, 20);
  detail[20] = 0;
  replyErr(RL_ERR_UNKNOWN_COMMAND, detail);
}

static void receiveByte(int c) {
  if (c == '\r' || c == '\n') {
    if (g_overflow) {
      replyErr(RL_ERR_LINE_TOO_LONG, "line longer than 95 characters");
    } else if (g_badChar) {
      replyErr(RL_ERR_BAD_CHARACTER, "non-printable byte in line");
    } else if (g_len > 0) {
      g_line[g_len] = 0;
      execute(g_line);
    }
    g_len = 0;
    g_overflow = g_badChar = false;
  } else if (c == '\t') {
    receiveByte(' ');
  } else if (c < 0x20 || c > 0x7E) {
    g_badChar = true;
  } else if (g_len < RL_MAX_LINE - 1) {
    g_line[g_len++] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : (char)c;
  } else {
    g_overflow = true;
  }
}

// Events flagged by the interrupts are printed here, never from an ISR.
static void reportEvents() {
  noInterrupts();
  uint8_t ev = g_events;
  uint8_t evStep = g_evStep, evState = g_evState, ovStep = g_ovStep, doneLen = g_doneLen;
  g_events = 0;
  interrupts();
  if (ev & EVF_HW_TRIG) {
    Serial.print(F("EV TRIG "));
    Serial.print(evStep);
    Serial.print(' ');
    Serial.print(evState);
    endLine();
  }
  if (ev & EVF_OVERRUN) {
    Serial.print(F("EV OVERRUN "));
    Serial.print(ovStep);
    endLine();
  }
  if (ev & EVF_DONE) {
    Serial.print(F("EV DONE "));
    Serial.print(doneLen);
    endLine();
  }
}

void setup() {
  wdt_disable();
  pinMode(PIN_TRIG_OUT, OUTPUT);
  TRIG_OUT_LOW();
  for (uint8_t f = 0; f < RL_NUM_FACETS; f++) {
    pinMode(FACET_PINS[f], OUTPUT);
    g_levels[f] = RL_DEFAULT_LEVEL;
  }
  applyLights(NO_STATE);
  setTiming(RL_DEFAULT_SETTLE_US, RL_DEFAULT_PULSE_US, RL_DEFAULT_HOLD_US);
  setupTimer5();
  pinMode(PIN_TRIG_IN, INPUT);
  attachInterrupt(digitalPinToInterrupt(PIN_TRIG_IN), onTriggerInput, RISING);
  Serial.begin(RL_BAUDRATE);
  Serial.print(F("EV READY " RL_DEVICE_NAME " " RL_FIRMWARE_VERSION " "));
  Serial.print(RL_PROTOCOL_VERSION);
  endLine();
  wdt_enable(WDTO_1S);          // a hung loop restarts the board (the host sees EV READY)
}

void loop() {
  wdt_reset();
  while (Serial.available() > 0) receiveByte(Serial.read());
  reportEvents();
}
