/* The x86 filter's kernel: importer.sinks.x86 documents the transform and keeps a pure-Python
 * reference of it (a regular expression), which this loop must equal byte for byte
 * (tests/test_delta_x86.py compares them). It exists for speed: the reference runs at
 * 12 MB/s on pandas' libraries, and a read of a filtered 256 KiB leaf would wait 20 ms for it.
 *
 * convert(data, sign, form) -> bytes
 *   sign +1 turns the plausible displacements of the units into positions, -1 turns them back;
 *   form 1 or 2 (importer.sinks.x86.FORMS) says which units.
 *
 * Units, tried at each position in this order (the reference's alternatives), each consumed
 * whole once found, converted or not:
 *   E8 d32                                  call rel32
 *   [REX 40-4F] 89|8B|8D modrm d32          mov/lea with modrm RIP-relative (mod 00, r/m 101)
 *   FF 15|25 d32                            call/jmp through a RIP-relative pointer
 * and in form 2 also
 *   [66|F2|F3] [REX] 0F op modrm d32        SSE moves and arithmetic, movzx, movsx (sse_opcode)
 *   [REX] op modrm d32                      add, sub, xor, cmp, movsxd, test, xchg (alu_opcode)
 * A displacement is plausible when its top byte is 00 or FF; it becomes (d32 + sign * end) mod
 * 2^25, sign-extended from bit 24, where end is the position just after it in the block.
 * At most one alternative can match at a position: the byte sets (E8, FF, prefixes, REX, 0F, the
 * mov and ALU opcodes) are disjoint, so the first byte picks the alternative, or after a REX the
 * next one; fixed_bytes tests them in an order of its own with the reference's outcome.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static int rip_modrm(unsigned char m) { return (m & 0xC7) == 0x05; }
static int mov_opcode(unsigned char b) { return b == 0x89 || b == 0x8B || b == 0x8D; }
static int rex(unsigned char b) { return b >= 0x40 && b <= 0x4F; }
static int sse_prefix(unsigned char b) { return b == 0x66 || b == 0xF2 || b == 0xF3; }
/* 0F 10/11 movups/movss/movsd, 28/29 movaps, 2E/2F ucomis/comis, 54 and, 57 xor, 58 add,
 * 59 mul, 5C sub, 5E div, 6F/7F movdqa/movdqu, B6/B7 movzx, BE/BF movsx. */
static int sse_opcode(unsigned char b) {
    switch (b) {
    case 0x10: case 0x11: case 0x28: case 0x29: case 0x2E: case 0x2F: case 0x54: case 0x57:
    case 0x58: case 0x59: case 0x5C: case 0x5E: case 0x6F: case 0x7F: case 0xB6: case 0xB7:
    case 0xBE: case 0xBF:
        return 1;
    default:
        return 0;
    }
}
/* 03 add, 2B sub, 33 xor, 39/3B cmp, 63 movsxd, 85 test, 87 xchg: none takes an immediate. */
static int alu_opcode(unsigned char b) {
    switch (b) {
    case 0x03: case 0x2B: case 0x33: case 0x39: case 0x3B: case 0x63: case 0x85: case 0x87:
        return 1;
    default:
        return 0;
    }
}

/* Whether a unit of each form (index form - 1) may start with a byte: most bytes of code start
 * none, and one table look-up passes them (form 2 ran at 0.4x form 1's speed without it). */
static unsigned char starts[2][256];

static void fill_starts(void) {
    for (int b = 0; b < 256; b++) {
        unsigned char c = (unsigned char)b;
        int form1 = c == 0xE8 || c == 0xFF || rex(c) || mov_opcode(c);
        starts[0][b] = (unsigned char)form1;
        starts[1][b] = (unsigned char)(form1 || sse_prefix(c) || c == 0x0F || alu_opcode(c));
    }
}

/* The number of bytes before the displacement of the unit of `form` that starts at p (`left`
 * bytes from p to the end of the block, at least 1), or 0 when none does. */
static Py_ssize_t fixed_bytes(const unsigned char *p, Py_ssize_t left, long form) {
    unsigned char b = p[0];
    if (b == 0xE8) return left >= 5 ? 1 : 0;
    if (b == 0xFF) return left >= 6 && (p[1] == 0x15 || p[1] == 0x25) ? 2 : 0;
    if (left < 6) return 0;  /* every other unit is at least 6 bytes; p[0..2] may be read */
    Py_ssize_t prefix = form >= 2 && sse_prefix(b) ? 1 : 0;
    Py_ssize_t k = prefix + (rex(p[prefix]) ? 1 : 0);  /* the opcode's offset, at most 2 */
    unsigned char op = p[k];
    if (!prefix && mov_opcode(op)) return left >= k + 6 && rip_modrm(p[k + 1]) ? k + 2 : 0;
    if (form < 2) return 0;
    if (op == 0x0F) return left >= k + 7 && sse_opcode(p[k + 1]) && rip_modrm(p[k + 2]) ? k + 3 : 0;
    if (!prefix && alu_opcode(op)) return left >= k + 6 && rip_modrm(p[k + 1]) ? k + 2 : 0;
    return 0;
}

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
    long sign, form;
    if (!PyArg_ParseTuple(args, "y*ll", &view, &sign, &form)) return NULL;
    if (form != 1 && form != 2) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "unknown x86 filter form %ld", form);
        return NULL;
    }
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
    const unsigned char *start = starts[form - 1];
    while (i < n) {
        if (!start[out[i]]) {
            i += 1;
            continue;
        }
        Py_ssize_t fixed = fixed_bytes(out + i, n - i, form);
        if (fixed) {
            convert_at(out, i + fixed, sign);
            i += fixed + 4;
        } else {
            i += 1;
        }
    }
    Py_END_ALLOW_THREADS
    return result;
}

static PyMethodDef x86_methods[] = {
    {"convert", convert, METH_VARARGS, "convert(data, sign, form) -> bytes: the x86 filter (+1) or its inverse (-1), form 1 or 2."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef x86_module = {
    PyModuleDef_HEAD_INIT, "importer.sinks._x86",
    "The x86 filter's compiled kernel (importer.sinks.x86).", -1, x86_methods,
};

PyMODINIT_FUNC PyInit__x86(void) {
    fill_starts();
    return PyModule_Create(&x86_module);
}
