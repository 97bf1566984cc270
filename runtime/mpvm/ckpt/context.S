// context.S — save and resume a call point, setjmp-style, without pointer
// mangling (the image is resumed in a different process).
//
//   int  mpvm_ckpt_save_context(Context* c);   returns 0 now, 1 when resumed
//   void mpvm_ckpt_resume_context(const Context* c);   never returns
    .text
    .globl mpvm_ckpt_save_context
    .hidden mpvm_ckpt_save_context
    .type mpvm_ckpt_save_context, @function
mpvm_ckpt_save_context:
    movq %rbx, 0(%rdi)
    movq %rbp, 8(%rdi)
    movq %r12, 16(%rdi)
    movq %r13, 24(%rdi)
    movq %r14, 32(%rdi)
    movq %r15, 40(%rdi)
    leaq 8(%rsp), %rax          // the caller's rsp after we return
    movq %rax, 48(%rdi)
    movq (%rsp), %rax           // return address
    movq %rax, 56(%rdi)
    stmxcsr 64(%rdi)
    fnstcw 68(%rdi)
    xorl %eax, %eax
    ret
    .size mpvm_ckpt_save_context, .-mpvm_ckpt_save_context

    .globl mpvm_ckpt_resume_context
    .hidden mpvm_ckpt_resume_context
    .type mpvm_ckpt_resume_context, @function
mpvm_ckpt_resume_context:
    movq 0(%rdi), %rbx
    movq 8(%rdi), %rbp
    movq 16(%rdi), %r12
    movq 24(%rdi), %r13
    movq 32(%rdi), %r14
    movq 40(%rdi), %r15
    ldmxcsr 64(%rdi)
    fldcw 68(%rdi)
    movq 48(%rdi), %rsp
    movl $1, %eax
    jmpq *56(%rdi)
    .size mpvm_ckpt_resume_context, .-mpvm_ckpt_resume_context

    .section .note.GNU-stack,"",@progbits
