// Host-build stand-in for the Arduino core: just enough of it to compile ringlight.ino on a PC
// (g++) so the tests can talk to the real firmware logic over a pseudo-terminal. Registers are
// plain variables; host_main.cpp plays the timer interrupt and the external trigger input.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define F_CPU 16000000UL
#define F(s) (s)
#define OUTPUT 1
#define INPUT 0
#define RISING 3
#define _BV(bit) (1u << (bit))

inline volatile uint8_t TCCR5A = 0, TCCR5B = 0, TIMSK5 = 0, TIFR5 = 0, PORTA = 0;
inline volatile uint16_t OCR5A = 0, TCNT5 = 0;
#define WGM52 3
#define CS51 1
#define OCIE5A 1
#define OCF5A 1
#define PA0 0

#define ISR(vector) extern "C" void vector(void); extern "C" void vector(void)

void noInterrupts();
void interrupts();
void pinMode(uint8_t pin, uint8_t mode);
void analogWrite(uint8_t pin, int value);
int digitalPinToInterrupt(uint8_t pin);
void attachInterrupt(int irq, void (*isr)(void), int mode);

class HostSerial {
 public:
  void begin(unsigned long baud);
  int available();
  int read();
  void print(const char *s);
  void print(char c);
  void print(unsigned char v);
  void print(int v);
  void print(unsigned int v);
  void print(long v);
  void print(unsigned long v);
};
extern HostSerial Serial;
