/*
 * Image decoding and encoding for public media, over libjpeg(-turbo) and libpng.
 *
 * The interface hides both libraries: Swift never sees a jmp_buf or a libpng structure, every
 * failure comes back as a status with a short message, and nothing here keeps global state, so
 * several uploads can be checked on several threads at once.
 */
#ifndef HELIOGRAPH_MEDIA_CODECS_H
#define HELIOGRAPH_MEDIA_CODECS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Why an operation failed; HG_MEDIA_OK (0) is success. */
typedef enum {
    HG_MEDIA_OK = 0,
    /* The bytes do not start with the format's signature. */
    HG_MEDIA_WRONG_FORMAT = 1,
    /* The data ends before the image does. */
    HG_MEDIA_TRUNCATED = 2,
    /* The library found the data corrupt or inconsistent. */
    HG_MEDIA_MALFORMED = 3,
    /* width x height is above the caller's pixel limit; nothing was allocated for pixels. */
    HG_MEDIA_TOO_MANY_PIXELS = 4,
    /* A valid image in a variant this code does not convert (such as a CMYK JPEG). */
    HG_MEDIA_UNSUPPORTED_VARIANT = 5,
    /* malloc failed. */
    HG_MEDIA_OUT_OF_MEMORY = 6,
    /* The caller passed an impossible argument (zero size, quality out of range). */
    HG_MEDIA_INVALID_ARGUMENT = 7
} hg_media_status;

/* Room for the library's own one-line explanation (libjpeg's JMSG_LENGTH_MAX is 200). */
#define HG_MEDIA_MESSAGE_CAPACITY 200

/*
 * The outcome of one call. `width` and `height` are the image's own size (header), `output_width`
 * and `output_height` the size of `pixels` (smaller when a JPEG is decoded with DCT scaling).
 * `pixels` (RGB, 3 bytes a pixel, rows without padding) or `bytes` (encoded file) are malloc'd
 * and belong to the caller, who releases them with hg_media_free; both are NULL on failure.
 */
typedef struct {
    hg_media_status status;
    uint32_t width;
    uint32_t height;
    uint32_t output_width;
    uint32_t output_height;
    uint8_t *pixels;
    uint8_t *bytes;
    size_t byte_count;
    char message[HG_MEDIA_MESSAGE_CAPACITY];
} hg_media_result;

/* Reads a JPEG's width and height from its frame header without decoding the scan. */
void hg_jpeg_read_header(const uint8_t *data, size_t size, hg_media_result *result);

/*
 * Decodes a whole JPEG to 8-bit RGB. Refuses (HG_MEDIA_TOO_MANY_PIXELS) before allocating when
 * width * height exceeds max_pixels. scale_denom (1, 2, 4 or 8) asks libjpeg to decode at
 * 1/scale_denom of the size in the DCT, which reads every byte of the file but never holds the
 * full-size pixels. Warnings (truncation, corrupt entropy data) are failures.
 */
void hg_jpeg_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels, uint32_t scale_denom,
                        hg_media_result *result);

/* Encodes 8-bit RGB pixels (width * height * 3 bytes) as a baseline JPEG at quality 1...100. */
void hg_jpeg_encode_rgb(const uint8_t *pixels, uint32_t width, uint32_t height, int quality,
                        hg_media_result *result);

/*
 * Checks the PNG's chunk layout (signature, chunk lengths within the data, an IEND) and reads
 * width and height. A chunk running past the end, or no IEND, is HG_MEDIA_TRUNCATED.
 */
void hg_png_read_header(const uint8_t *data, size_t size, hg_media_result *result);

/*
 * Decodes a whole PNG (any bit depth, palette, grey, alpha, interlaced) to 8-bit RGB; alpha is
 * composited onto white. Refuses before allocating when width * height exceeds max_pixels.
 */
void hg_png_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels, hg_media_result *result);

/* Encodes 8-bit pixels with `channels` 3 (RGB) or 4 (RGBA) as a PNG. Used to make test images. */
void hg_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, hg_media_result *result);

/* Releases `pixels` or `bytes` of a result. NULL is allowed. */
void hg_media_free(void *pointer);

#ifdef __cplusplus
}
#endif

#endif
