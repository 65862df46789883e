/* The x86 filter's kernel: importer.sinks.x86 documents the transform and keeps a pure-Python
 * reference of it (a regular expression), which this loop must equal byte for byte
 * (tests/test_delta_x86.py compares them). It exists for speed: the reference runs at
 * 12 MB/s on pandas' libraries, and a read of a filtered 256 KiB leaf would wait 20 ms for it.
 *
 * convert(data, sign) -> bytes
 *   sign +1 turns the plausible displacements of the units into positions, -1 turns them back.
 *
 * Units, tried at each position in this order (the reference's alternatives), each consumed
 * whole once found, converted or not:
 *   E8 d32                                  call rel32
 *   [REX 40-4F] 89|8B|8D modrm d32          mov/lea with modrm RIP-relative (mod 00, r/m 101)
 *   FF 15|25 d32                            call/jmp through a RIP-relative pointer
 * A displacement is plausible when its top byte is 00 or FF; it becomes (d32 + sign * end) mod
 * 2^25, sign-extended from bit 24, where end is the position just after it in the block.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int rip_modrm(unsigned char m) { return (m & 0xC7) == 0x05; }
static int mov_opcode(unsigned char b) { return b == 0x89 || b == 0x8B || b == 0x8D; }

static void convert_at(unsigned char *out, Py_ssize_t at, long sign) {
    unsigned char top = out[at + 3];
    if (top != 0x00 && top != 0xFF) return;
    uint32_t value = (uint32_t)out[at] | ((uint32_t)out[at + 1] << 8) | ((uint32_t)out[at + 2] << 16)
                     | ((uint32_t)top << 24);
    uint32_t end = (uint32_t)(at + 4);
    uint32_t converted = (sign > 0 ? value + end : value - end) & 0x1FFFFFFu;
    if (converted & 0x1000000u) converted |= 0xFE000000u;
    out[at] = (unsigned char)converted;
    out[at + 1] = (unsigned char)(converted >> 8);
    out[at + 2] = (unsigned char)(converted >> 16);
    out[at + 3] = (unsigned char)(converted >> 24);
}

static PyObject *convert(PyObject *self, PyObject *args) {
    Py_buffer view;
    long sign;
    if (!PyArg_ParseTuple(args, "y*l", &view, &sign)) return NULL;
    PyObject *result = PyBytes_FromStringAndSize(NULL, view.len);
    if (result == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const Py_ssize_t n = view.len;
    memcpy(out, view.buf, (size_t)n);
    PyBuffer_Release(&view);
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    while (i < n) {
        unsigned char b = out[i];
        if (b == 0xE8 && i + 5 <= n) {
            convert_at(out, i + 1, sign);
            i += 5;
        } else if (b >= 0x40 && b <= 0x4F && i + 7 <= n && mov_opcode(out[i + 1]) && rip_modrm(out[i + 2])) {
            convert_at(out, i + 3, sign);
            i += 7;
        } else if (mov_opcode(b) && i + 6 <= n && rip_modrm(out[i + 1])) {
            convert_at(out, i + 2, sign);
            i += 6;
        } else if (b == 0xFF && i + 6 <= n && (out[i + 1] == 0x15 || out[i + 1] == 0x25)) {
            convert_at(out, i + 2, sign);
            i += 6;
        } else {
            i += 1;
        }
    }
    Py_END_ALLOW_THREADS
    return result;
}

static PyMethodDef x86_methods[] = {
    {"convert", convert, METH_VARARGS, "convert(data, sign) -> bytes: the x86 filter (+1) or its inverse (-1)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef x86_module = {
    PyModuleDef_HEAD_INIT, "importer.sinks._x86",
    "The x86 filter's compiled kernel (importer.sinks.x86).", -1, x86_methods,
};

PyMODINIT_FUNC PyInit__x86(void) { return PyModule_Create(&x86_module); }
