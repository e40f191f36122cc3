/* G.711 audio in and out of a spandsp fax terminal: decode and feed, pull and encode. */
#include <spandsp.h>

#include "fbglue.h"

int fb_rx_g711(fax_state_t *fax, g711_state_t *codec, const uint8_t *data, int len)
{
    int16_t amp[1024];
    int done = 0;
    while (done < len) {
        int n = len - done;
        if (n > 1024)
            n = 1024;
        n = g711_decode(codec, amp, data + done, n);
        fax_rx(fax, amp, n);
        done += n;
    }
    return done;
}

/* Fills exactly `samples` bytes: spandsp may return fewer samples (it is idle), pad with silence. */
int fb_tx_g711(fax_state_t *fax, g711_state_t *codec, uint8_t *out, int samples)
{
    int16_t amp[1024];
    int n;
    if (samples > 1024)
        samples = 1024;
    n = fax_tx(fax, amp, samples);
    if (n < 0)
        n = 0;
    for (int i = n; i < samples; i++)
        amp[i] = 0;
    g711_encode(codec, out, amp, samples);
    return n;
}


/* One 20 ms tick of a G.711 call in one C call.  What the playout buffer decided is due goes
   into spandsp first: `fillin` samples of lost audio, then `rx_len` bytes of received audio
   (either may be 0).  Then spandsp's next `samples` of audio come out G.711-encoded behind the
   12-byte RTP header Python chose (`b1`: marker and payload type; sequence; timestamp; SSRC).
   Returns the packet's length.  Python decides; this only moves the samples. */
int fb_g711_tick(fax_state_t *fax, g711_state_t *codec, const uint8_t *rx, int rx_len, int fillin,
                 uint8_t *packet, int b1, int seq, uint32_t ts, uint32_t ssrc, int samples)
{
    if (samples > 1024)
        samples = 1024;
    if (fillin > 0)
        fax_rx_fillin(fax, fillin);
    if (rx_len > 0)
        fb_rx_g711(fax, codec, rx, rx_len);
    packet[0] = 0x80;
    packet[1] = (uint8_t) b1;
    packet[2] = (uint8_t) (seq >> 8);
    packet[3] = (uint8_t) seq;
    packet[4] = (uint8_t) (ts >> 24);
    packet[5] = (uint8_t) (ts >> 16);
    packet[6] = (uint8_t) (ts >> 8);
    packet[7] = (uint8_t) ts;
    packet[8] = (uint8_t) (ssrc >> 24);
    packet[9] = (uint8_t) (ssrc >> 16);
    packet[10] = (uint8_t) (ssrc >> 8);
    packet[11] = (uint8_t) ssrc;
    fb_tx_g711(fax, codec, packet + 12, samples);
    return 12 + samples;
}
