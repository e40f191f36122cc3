/* `make bench`'s C baseline: spandsp's own fax-to-fax loop, no Python anywhere.

   Two fax_state_t back to back over G.711 mu-law, 20 ms (160 samples) at a time, as spandsp's
   tests/fax_tests.c does, set up exactly as appliance/spandsp/audio.py sets up a terminal (same
   modems, compressions, ECM, T.6 receive encoding) and moving samples the way the binding's
   fb_tx_g711/fb_rx_g711 do.  The receiving end's work per block (its transmit, encode, decode,
   receive) is timed with the thread's CPU clock, like bench_calls.bare_spandsp.

   usage: fax_loop TIFF RXFILE RUNS
   prints one line per run: "rx_cpu_s both_cpu_s simulated_s ok" */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <spandsp.h>

#define BLOCK 160
#define MAX_BLOCKS (50 * 600)

static int done[2];
static int codes[2];

static void phase_e(t30_state_t *s, void *user_data, int completion_code)
{
    int *who = user_data;
    (void) s;
    done[*who] = 1;
    codes[*who] = completion_code;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static fax_state_t *terminal(int calling, const char *file, int *who)
{
    fax_state_t *fax = fax_init(NULL, calling);
    t30_state_t *t30 = fax_get_t30_state(fax);
    fax_set_transmit_on_idle(fax, 1);
    fax_set_tep_mode(fax, 0);
    t30_set_ecm_capability(t30, 1);
    t30_set_supported_modems(t30, T30_SUPPORT_V27TER | T30_SUPPORT_V29 | T30_SUPPORT_V17);
    t30_set_supported_compressions(t30, T30_SUPPORT_T4_1D_COMPRESSION | T30_SUPPORT_T4_2D_COMPRESSION
                                   | T30_SUPPORT_T6_COMPRESSION);
    t30_set_supported_resolutions(t30, T30_SUPPORT_STANDARD_RESOLUTION | T30_SUPPORT_FINE_RESOLUTION
                                  | T30_SUPPORT_SUPERFINE_RESOLUTION | T30_SUPPORT_R8_RESOLUTION
                                  | T30_SUPPORT_R16_RESOLUTION);
    t30_set_supported_image_sizes(t30, T30_SUPPORT_US_LETTER_LENGTH | T30_SUPPORT_US_LEGAL_LENGTH
                                  | T30_SUPPORT_UNLIMITED_LENGTH | T30_SUPPORT_215MM_WIDTH
                                  | T30_SUPPORT_255MM_WIDTH | T30_SUPPORT_303MM_WIDTH
                                  | T30_SUPPORT_A4_LENGTH | T30_SUPPORT_B4_LENGTH);
    if (calling) {
        t30_set_tx_file(t30, file, -1, -1);
    } else {
        t30_set_rx_encoding(t30, T4_COMPRESSION_ITU_T6);
        t30_set_rx_file(t30, file, -1);
    }
    t30_set_phase_e_handler(t30, phase_e, who);
    return fax;
}

/* one block out of `fax` as G.711: silence where spandsp has nothing to say (fb_tx_g711) */
static void tx_block(fax_state_t *fax, g711_state_t *codec, uint8_t *out)
{
    int16_t amp[BLOCK];
    int n = fax_tx(fax, amp, BLOCK);
    if (n < 0)
        n = 0;
    for (int i = n; i < BLOCK; i++)
        amp[i] = 0;
    g711_encode(codec, out, amp, BLOCK);
}

static void rx_block(fax_state_t *fax, g711_state_t *codec, const uint8_t *in)
{
    int16_t amp[BLOCK];
    int n = g711_decode(codec, amp, in, BLOCK);
    fax_rx(fax, amp, n);
}

int main(int argc, char **argv)
{
    static int who[2] = {0, 1};
    if (argc != 4) {
        fprintf(stderr, "usage: %s TIFF RXFILE RUNS\n", argv[0]);
        return 2;
    }
    int runs = atoi(argv[3]);
    for (int run = 0; run < runs; run++) {
        done[0] = done[1] = 0;
        fax_state_t *tx = terminal(1, argv[1], &who[0]);
        fax_state_t *rx = terminal(0, argv[2], &who[1]);
        g711_state_t *tx_codec = g711_init(NULL, G711_ULAW);
        g711_state_t *rx_codec = g711_init(NULL, G711_ULAW);
        uint8_t a[BLOCK], b[BLOCK];
        double rx_cpu = 0.0, t0 = cpu_now();
        int blocks = 0;
        while (!(done[0] && done[1]) && blocks < MAX_BLOCKS) {
            tx_block(tx, tx_codec, a);
            double r0 = cpu_now();
            tx_block(rx, rx_codec, b);
            rx_block(rx, rx_codec, a);
            rx_cpu += cpu_now() - r0;
            rx_block(tx, tx_codec, b);
            blocks++;
        }
        double both = cpu_now() - t0;
        int ok = done[0] && done[1] && codes[0] == T30_ERR_OK && codes[1] == T30_ERR_OK;
        printf("%.6f %.6f %.2f %d\n", rx_cpu, both, blocks * 0.02, ok);
        fflush(stdout);
        fax_free(tx);
        fax_free(rx);
        g711_free(tx_codec);
        g711_free(rx_codec);
    }
    return 0;
}
