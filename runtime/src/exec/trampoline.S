/* wharf's exec trampoline (x86_64 Linux, no libc; built by
 * runtime/build.rs, embedded by exec/oci.rs). A container's process
 * execs this from a sealed memfd just before it execs its program, so
 * that while that exec happens /proc/self/exe names the sealed memfd and
 * not wharf's executable on the host: a program or `#!` interpreter of
 * `/proc/self/exe` in the image runs this again, harmlessly, and no
 * container process can open a host file through /proc/PID/exe
 * (CVE-2019-5736).
 *
 * argv: WHARF-T PATH ARGV0 ARGS...   -> execve(PATH, &ARGV0, envp)
 * fd 3: the start's error pipe, made close-on-exec here; when execve
 *       fails, 8 bytes go there: the exec step number and the errno
 *       (both 32-bit, native order), then exit 127.
 * Run any other way (argv[0] not exactly "WHARF-T"), as the image's
 * /proc/self/exe would run it, it exits 126 at once, so that a
 * `#!/proc/self/exe` script cannot make it exec itself for ever. */
    .section .note.GNU-stack,"",@progbits
    .globl _start
    .text
_start:
    mov     (%rsp), %rcx            /* argc */
    cmp     $3, %rcx
    jb      refuse
    mov     8(%rsp), %rax           /* argv[0] must be "WHARF-T\0" */
    mov     (%rax), %rax
    movabs  $0x00542d4652414857, %rdx
    cmp     %rdx, %rax
    jne     refuse
    mov     $157, %eax              /* prctl(PR_SET_DUMPABLE, 0): no */
    mov     $4, %edi                /* container process may open our */
    xor     %esi, %esi              /* descriptors (the error pipe) */
    syscall
    mov     (%rsp), %rcx            /* argc again: syscall clobbers rcx */
    mov     16(%rsp), %r12          /* PATH */
    lea     24(%rsp), %r13          /* argv from ARGV0 */
    lea     16(%rsp,%rcx,8), %r14   /* envp: past argv's NULL */
    mov     $72, %eax               /* fcntl(3, F_SETFD, FD_CLOEXEC) */
    mov     $3, %edi
    mov     $2, %esi
    mov     $1, %edx
    syscall
    mov     %r12, %rdi              /* execve(PATH, argv, envp) */
    mov     %r13, %rsi
    mov     %r14, %rdx
    mov     $59, %eax
    syscall
    neg     %eax                    /* the errno */
    sub     $8, %rsp
    movl    $EXEC_STEP, (%rsp)
    mov     %eax, 4(%rsp)
    mov     $1, %eax                /* write(3, record, 8) */
    mov     $3, %edi
    mov     %rsp, %rsi
    mov     $8, %edx
    syscall
    mov     $231, %eax              /* exit_group(127) */
    mov     $127, %edi
    syscall
refuse:
    mov     $231, %eax              /* exit_group(126) */
    mov     $126, %edi
    syscall
