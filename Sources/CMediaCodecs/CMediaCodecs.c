/*
 * libjpeg and libpng behind a small, thread-safe interface (see include/CMediaCodecs.h).
 *
 * libjpeg reports fatal errors by calling error_exit, whose default prints and calls exit(); a
 * server cannot let an uploaded file end the process, so error_exit here longjmps back to the
 * setjmp in the function that called into libjpeg, which frees what it allocated and returns a
 * status. The jump never crosses Swift frames: setjmp and every libjpeg call are in this file.
 * libpng's simplified API catches its own errors and returns 0 with a message, so no jump is
 * needed there.
 */
#include <setjmp.h>
#include <stdio.h> /* jpeglib.h uses FILE without including stdio.h itself. */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>
#include <png.h>

#include "CMediaCodecs.h"

/* libjpeg refuses larger dimensions; checking first gives a clearer status than its error. */
#define HG_JPEG_MAX_DIMENSION 65500u

static void hg_result_reset(hg_media_result *result) {
    memset(result, 0, sizeof(*result));
    result->status = HG_MEDIA_OK;
}

static void hg_result_fail(hg_media_result *result, hg_media_status status, const char *message) {
    result->status = status;
    result->pixels = NULL;
    result->bytes = NULL;
    result->byte_count = 0;
    snprintf(result->message, sizeof(result->message), "%s", message ? message : "");
}

void hg_media_free(void *pointer) { free(pointer); }

/* MARK: - JPEG */

/* The error manager comes first so libjpeg's `cinfo->err` can be cast back to the whole record. */
typedef struct {
    struct jpeg_error_mgr manager;
    jmp_buf jump;
    hg_media_status status;
    char message[JMSG_LENGTH_MAX];
} hg_jpeg_error;

static void hg_jpeg_error_exit(j_common_ptr cinfo) {
    hg_jpeg_error *error = (hg_jpeg_error *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, error->message);
    if (error->status == HG_MEDIA_OK) {
        error->status = HG_MEDIA_MALFORMED;
    }
    longjmp(error->jump, 1);
}

/*
 * libjpeg merely warns about a file that ends early (it pads the data with a fake end marker and
 * returns grey pixels) or about corrupt entropy-coded data. An upload that decodes to a partly grey
 * picture is a broken upload, so warnings are failures here, except the few that describe harmless
 * metadata. Trace messages (level >= 0) are ignored.
 */
static void hg_jpeg_emit_message(j_common_ptr cinfo, int level) {
    if (level >= 0) {
        return;
    }
    int code = cinfo->err->msg_code;
    if (code == JWRN_JFIF_MAJOR || code == JWRN_ADOBE_XFORM) {
        return;
    }
    hg_jpeg_error *error = (hg_jpeg_error *)cinfo->err;
    error->status = code == JWRN_JPEG_EOF ? HG_MEDIA_TRUNCATED : HG_MEDIA_MALFORMED;
    (*cinfo->err->format_message)(cinfo, error->message);
    longjmp(error->jump, 1);
}

/* Nothing is ever written to stderr: the message travels back in the result instead. */
static void hg_jpeg_output_message(j_common_ptr cinfo) { (void)cinfo; }

static void hg_jpeg_install_errors(hg_jpeg_error *error) {
    jpeg_std_error(&error->manager);
    error->manager.error_exit = hg_jpeg_error_exit;
    error->manager.emit_message = hg_jpeg_emit_message;
    error->manager.output_message = hg_jpeg_output_message;
    error->status = HG_MEDIA_OK;
    error->message[0] = '\0';
}

/* Every JPEG starts with SOI (FF D8) followed by the next marker's FF. */
static int hg_jpeg_has_signature(const uint8_t *data, size_t size, hg_media_result *result) {
    static const uint8_t signature[3] = {0xFF, 0xD8, 0xFF};
    size_t compared = size < 3 ? size : 3;
    if (data == NULL || size == 0) {
        hg_result_fail(result, HG_MEDIA_TRUNCATED, "the file is empty");
        return 0;
    }
    if (memcmp(data, signature, compared) != 0) {
        hg_result_fail(result, HG_MEDIA_WRONG_FORMAT, "no JPEG start-of-image marker");
        return 0;
    }
    if (size < 3) {
        hg_result_fail(result, HG_MEDIA_TRUNCATED, "the file ends after its first bytes");
        return 0;
    }
    return 1;
}

/* Decoder state that must survive a longjmp, hence kept in memory and `volatile` where written. */
typedef struct {
    struct jpeg_decompress_struct cinfo;
    hg_jpeg_error error;
    uint8_t *volatile pixels;
    volatile int created;
} hg_jpeg_decoder;

void hg_jpeg_read_header(const uint8_t *data, size_t size, hg_media_result *result) {
    hg_result_reset(result);
    if (!hg_jpeg_has_signature(data, size, result)) {
        return;
    }
    hg_jpeg_decoder decoder;
    memset(&decoder, 0, sizeof(decoder));
    decoder.cinfo.err = &decoder.error.manager;
    hg_jpeg_install_errors(&decoder.error);
    if (setjmp(decoder.error.jump)) {
        hg_result_fail(result, decoder.error.status, decoder.error.message);
        if (decoder.created) {
            jpeg_destroy_decompress(&decoder.cinfo);
        }
        return;
    }
    jpeg_create_decompress(&decoder.cinfo);
    decoder.created = 1;
    jpeg_mem_src(&decoder.cinfo, data, (unsigned long)size);
    jpeg_read_header(&decoder.cinfo, TRUE);
    result->width = decoder.cinfo.image_width;
    result->height = decoder.cinfo.image_height;
    result->output_width = result->width;
    result->output_height = result->height;
    jpeg_destroy_decompress(&decoder.cinfo);
}

void hg_jpeg_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels, uint32_t scale_denom,
                        hg_media_result *result) {
    hg_result_reset(result);
    if (scale_denom != 1 && scale_denom != 2 && scale_denom != 4 && scale_denom != 8) {
        hg_result_fail(result, HG_MEDIA_INVALID_ARGUMENT, "the scale must be 1, 2, 4 or 8");
        return;
    }
    if (!hg_jpeg_has_signature(data, size, result)) {
        return;
    }
    hg_jpeg_decoder decoder;
    memset(&decoder, 0, sizeof(decoder));
    decoder.cinfo.err = &decoder.error.manager;
    hg_jpeg_install_errors(&decoder.error);
    if (setjmp(decoder.error.jump)) {
        uint32_t width = result->width, height = result->height;
        hg_result_fail(result, decoder.error.status, decoder.error.message);
        result->width = width;
        result->height = height;
        free(decoder.pixels);
        if (decoder.created) {
            jpeg_destroy_decompress(&decoder.cinfo);
        }
        return;
    }
    jpeg_create_decompress(&decoder.cinfo);
    decoder.created = 1;
    jpeg_mem_src(&decoder.cinfo, data, (unsigned long)size);
    jpeg_read_header(&decoder.cinfo, TRUE);
    result->width = decoder.cinfo.image_width;
    result->height = decoder.cinfo.image_height;

    /* The limit is on the image's own size, whatever the scale: the whole image is decoded. */
    if ((uint64_t)decoder.cinfo.image_width * (uint64_t)decoder.cinfo.image_height > max_pixels) {
        uint32_t width = result->width, height = result->height;
        hg_result_fail(result, HG_MEDIA_TOO_MANY_PIXELS, "the image has more pixels than allowed");
        result->width = width;
        result->height = height;
        jpeg_destroy_decompress(&decoder.cinfo);
        return;
    }
    /* libjpeg-turbo cannot turn CMYK or YCCK into RGB; refuse them by name, not as corrupt. */
    if (decoder.cinfo.jpeg_color_space == JCS_CMYK || decoder.cinfo.jpeg_color_space == JCS_YCCK) {
        uint32_t width = result->width, height = result->height;
        hg_result_fail(result, HG_MEDIA_UNSUPPORTED_VARIANT, "CMYK JPEG images are not supported");
        result->width = width;
        result->height = height;
        jpeg_destroy_decompress(&decoder.cinfo);
        return;
    }
    decoder.cinfo.out_color_space = JCS_RGB;
    decoder.cinfo.scale_num = 1;
    decoder.cinfo.scale_denom = scale_denom;
    jpeg_start_decompress(&decoder.cinfo);

    uint32_t output_width = decoder.cinfo.output_width;
    uint32_t output_height = decoder.cinfo.output_height;
    if (decoder.cinfo.output_components != 3 || output_width == 0 || output_height == 0) {
        decoder.error.status = HG_MEDIA_MALFORMED;
        snprintf(decoder.error.message, sizeof(decoder.error.message), "unexpected output format");
        longjmp(decoder.error.jump, 1);
    }
    size_t stride = (size_t)output_width * 3;
    decoder.pixels = malloc(stride * (size_t)output_height);
    if (decoder.pixels == NULL) {
        decoder.error.status = HG_MEDIA_OUT_OF_MEMORY;
        snprintf(decoder.error.message, sizeof(decoder.error.message), "out of memory for the pixels");
        longjmp(decoder.error.jump, 1);
    }
    while (decoder.cinfo.output_scanline < output_height) {
        JSAMPROW row = decoder.pixels + (size_t)decoder.cinfo.output_scanline * stride;
        jpeg_read_scanlines(&decoder.cinfo, &row, 1);
    }
    /* Reading on to the end marker is what notices a file cut after its last scanline. */
    jpeg_finish_decompress(&decoder.cinfo);
    jpeg_destroy_decompress(&decoder.cinfo);

    result->output_width = output_width;
    result->output_height = output_height;
    result->pixels = decoder.pixels;
    result->byte_count = stride * (size_t)output_height;
}

typedef struct {
    struct jpeg_compress_struct cinfo;
    hg_jpeg_error error;
    /* jpeg_mem_dest allocates and grows this buffer; it is the caller's to free, also on error. */
    unsigned char *buffer;
    unsigned long size;
    volatile int created;
} hg_jpeg_encoder;

void hg_jpeg_encode_rgb(const uint8_t *pixels, uint32_t width, uint32_t height, int quality,
                        hg_media_result *result) {
    hg_result_reset(result);
    if (pixels == NULL || width == 0 || height == 0 || width > HG_JPEG_MAX_DIMENSION ||
        height > HG_JPEG_MAX_DIMENSION || quality < 1 || quality > 100) {
        hg_result_fail(result, HG_MEDIA_INVALID_ARGUMENT, "invalid size or quality for a JPEG");
        return;
    }
    hg_jpeg_encoder encoder;
    memset(&encoder, 0, sizeof(encoder));
    encoder.cinfo.err = &encoder.error.manager;
    hg_jpeg_install_errors(&encoder.error);
    if (setjmp(encoder.error.jump)) {
        hg_result_fail(result, encoder.error.status, encoder.error.message);
        if (encoder.created) {
            jpeg_destroy_compress(&encoder.cinfo);
        }
        free(encoder.buffer);
        return;
    }
    jpeg_create_compress(&encoder.cinfo);
    encoder.created = 1;
    jpeg_mem_dest(&encoder.cinfo, &encoder.buffer, &encoder.size);
    encoder.cinfo.image_width = width;
    encoder.cinfo.image_height = height;
    encoder.cinfo.input_components = 3;
    encoder.cinfo.in_color_space = JCS_RGB;
    jpeg_set_defaults(&encoder.cinfo);
    jpeg_set_quality(&encoder.cinfo, quality, TRUE);
    jpeg_start_compress(&encoder.cinfo, TRUE);
    size_t stride = (size_t)width * 3;
    while (encoder.cinfo.next_scanline < height) {
        /* libjpeg's row type is not const, but compression only reads the rows. */
        JSAMPROW row = (JSAMPROW)(pixels + (size_t)encoder.cinfo.next_scanline * stride);
        jpeg_write_scanlines(&encoder.cinfo, &row, 1);
    }
    jpeg_finish_compress(&encoder.cinfo);
    jpeg_destroy_compress(&encoder.cinfo);
    result->width = width;
    result->height = height;
    result->output_width = width;
    result->output_height = height;
    result->bytes = encoder.buffer;
    result->byte_count = (size_t)encoder.size;
}

/* MARK: - PNG */

static uint32_t hg_read_be32(const uint8_t *bytes) {
    return ((uint32_t)bytes[0] << 24) | ((uint32_t)bytes[1] << 16) | ((uint32_t)bytes[2] << 8) | (uint32_t)bytes[3];
}

/*
 * Walks the chunk list. libpng's simplified API reports a cut file only as a generic read error,
 * so this walk is what tells "truncated" from "corrupt": every chunk's declared length must fit
 * in the data, and the list must reach IEND.
 */
static int hg_png_walk(const uint8_t *data, size_t size, hg_media_result *result) {
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (data == NULL || size == 0) {
        hg_result_fail(result, HG_MEDIA_TRUNCATED, "the file is empty");
        return 0;
    }
    size_t compared = size < 8 ? size : 8;
    if (memcmp(data, signature, compared) != 0) {
        hg_result_fail(result, HG_MEDIA_WRONG_FORMAT, "no PNG signature");
        return 0;
    }
    if (size < 8) {
        hg_result_fail(result, HG_MEDIA_TRUNCATED, "the file ends inside the PNG signature");
        return 0;
    }
    size_t offset = 8;
    int chunk_index = 0;
    for (;;) {
        if (size - offset < 8) {
            hg_result_fail(result, HG_MEDIA_TRUNCATED, offset == size ? "the file ends before its IEND chunk"
                                                                      : "the file ends inside a chunk header");
            return 0;
        }
        uint32_t length = hg_read_be32(data + offset);
        const uint8_t *type = data + offset + 4;
        if (length > 0x7FFFFFFFu) {
            hg_result_fail(result, HG_MEDIA_MALFORMED, "a chunk length is out of range");
            return 0;
        }
        /* Length plus type plus CRC must fit: compare by subtraction so nothing overflows. */
        if (size - offset - 8 < (size_t)length + 4) {
            hg_result_fail(result, HG_MEDIA_TRUNCATED, "the file ends inside a chunk");
            return 0;
        }
        if (chunk_index == 0) {
            if (memcmp(type, "IHDR", 4) != 0 || length != 13) {
                hg_result_fail(result, HG_MEDIA_MALFORMED, "the first chunk is not a valid IHDR");
                return 0;
            }
            result->width = hg_read_be32(data + offset + 8);
            result->height = hg_read_be32(data + offset + 12);
        }
        if (memcmp(type, "IEND", 4) == 0) {
            return 1;
        }
        offset += (size_t)length + 12;
        chunk_index += 1;
    }
}

void hg_png_read_header(const uint8_t *data, size_t size, hg_media_result *result) {
    hg_result_reset(result);
    if (!hg_png_walk(data, size, result)) {
        return;
    }
    if (result->width == 0 || result->height == 0 || result->width > 0x7FFFFFFFu || result->height > 0x7FFFFFFFu) {
        hg_result_fail(result, HG_MEDIA_MALFORMED, "the header gives an invalid size");
        return;
    }
    result->output_width = result->width;
    result->output_height = result->height;
}

void hg_png_decode_rgb(const uint8_t *data, size_t size, uint64_t max_pixels, hg_media_result *result) {
    hg_png_read_header(data, size, result);
    if (result->status != HG_MEDIA_OK) {
        return;
    }
    png_image image;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&image, data, size)) {
        hg_result_fail(result, HG_MEDIA_MALFORMED, image.message);
        png_image_free(&image);
        return;
    }
    result->width = image.width;
    result->height = image.height;
    if ((uint64_t)image.width * (uint64_t)image.height > max_pixels) {
        uint32_t width = result->width, height = result->height;
        hg_result_fail(result, HG_MEDIA_TOO_MANY_PIXELS, "the image has more pixels than allowed");
        result->width = width;
        result->height = height;
        png_image_free(&image);
        return;
    }
    image.format = PNG_FORMAT_RGB;
    size_t byte_count = PNG_IMAGE_SIZE(image);
    uint8_t *pixels = malloc(byte_count);
    if (pixels == NULL) {
        hg_result_fail(result, HG_MEDIA_OUT_OF_MEMORY, "out of memory for the pixels");
        png_image_free(&image);
        return;
    }
    /* Transparent areas become white, as a thumbnail of a logo or sticker is shown on light UI. */
    png_color white = {255, 255, 255};
    if (!png_image_finish_read(&image, &white, pixels, 0, NULL)) {
        free(pixels);
        uint32_t width = result->width, height = result->height;
        hg_result_fail(result, HG_MEDIA_MALFORMED, image.message);
        result->width = width;
        result->height = height;
        png_image_free(&image);
        return;
    }
    png_image_free(&image);
    result->output_width = result->width;
    result->output_height = result->height;
    result->pixels = pixels;
    result->byte_count = byte_count;
}

void hg_png_encode(const uint8_t *pixels, uint32_t width, uint32_t height, int channels, hg_media_result *result) {
    hg_result_reset(result);
    if (pixels == NULL || width == 0 || height == 0 || (channels != 3 && channels != 4)) {
        hg_result_fail(result, HG_MEDIA_INVALID_ARGUMENT, "invalid size or channel count for a PNG");
        return;
    }
    png_image image;
    memset(&image, 0, sizeof(image));
    image.version = PNG_IMAGE_VERSION;
    image.width = width;
    image.height = height;
    image.format = channels == 4 ? PNG_FORMAT_RGBA : PNG_FORMAT_RGB;
    png_alloc_size_t size = 0;
    /* The first call only measures; the second writes into a buffer of that size. */
    if (!png_image_write_get_memory_size(image, size, 0, pixels, 0, NULL)) {
        hg_result_fail(result, HG_MEDIA_MALFORMED, image.message);
        png_image_free(&image);
        return;
    }
    uint8_t *bytes = malloc(size);
    if (bytes == NULL) {
        hg_result_fail(result, HG_MEDIA_OUT_OF_MEMORY, "out of memory for the PNG");
        png_image_free(&image);
        return;
    }
    if (!png_image_write_to_memory(&image, bytes, &size, 0, pixels, 0, NULL)) {
        free(bytes);
        hg_result_fail(result, HG_MEDIA_MALFORMED, image.message);
        png_image_free(&image);
        return;
    }
    png_image_free(&image);
    result->width = width;
    result->height = height;
    result->output_width = width;
    result->output_height = height;
    result->bytes = bytes;
    result->byte_count = (size_t)size;
}
