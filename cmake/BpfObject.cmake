# The BPF build pipeline:
#   running kernel's BTF --bpftool--> vmlinux.h
#   foo.bpf.c --clang -target bpf--> foo.bpf.o --bpftool gen skeleton--> foo.skel.h
# bpf_object(foo foo.bpf.c) makes an INTERFACE target `foo_skel` whose include path holds
# foo.skel.h, so C++ code links it and includes "foo.skel.h".

find_program(BPFTOOL_EXECUTABLE bpftool PATHS /usr/sbin /usr/local/sbin REQUIRED)
find_program(BPF_CLANG_EXECUTABLE NAMES clang clang-14 REQUIRED)

set(LOUPE_VMLINUX_BTF "/sys/kernel/btf/vmlinux" CACHE FILEPATH
    "BTF used to generate vmlinux.h (the running kernel's by default)")
set(LOUPE_BPF_GEN_DIR ${CMAKE_BINARY_DIR}/bpf-gen)
file(MAKE_DIRECTORY ${LOUPE_BPF_GEN_DIR})

if(NOT EXISTS ${LOUPE_VMLINUX_BTF})
  message(FATAL_ERROR "No kernel BTF at ${LOUPE_VMLINUX_BTF}: loupe needs a kernel built with "
                      "CONFIG_DEBUG_INFO_BTF=y (or pass -DLOUPE_VMLINUX_BTF=<file>)")
endif()

add_custom_command(
  OUTPUT ${LOUPE_BPF_GEN_DIR}/vmlinux.h
  COMMAND ${BPFTOOL_EXECUTABLE} btf dump file ${LOUPE_VMLINUX_BTF} format c > vmlinux.h.tmp
  COMMAND ${CMAKE_COMMAND} -E rename vmlinux.h.tmp vmlinux.h
  WORKING_DIRECTORY ${LOUPE_BPF_GEN_DIR}
  COMMENT "Generating vmlinux.h from ${LOUPE_VMLINUX_BTF}"
  VERBATIM)
add_custom_target(loupe_vmlinux_h DEPENDS ${LOUPE_BPF_GEN_DIR}/vmlinux.h)

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  set(LOUPE_BPF_ARCH x86)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  set(LOUPE_BPF_ARCH arm64)
else()
  message(FATAL_ERROR "loupe's BPF programs are not ported to ${CMAKE_SYSTEM_PROCESSOR}")
endif()

function(bpf_object name source)
  set(src ${CMAKE_CURRENT_SOURCE_DIR}/${source})
  set(obj ${LOUPE_BPF_GEN_DIR}/${name}.bpf.o)
  set(skel ${LOUPE_BPF_GEN_DIR}/${name}.skel.h)
  file(GLOB bpf_headers ${CMAKE_CURRENT_SOURCE_DIR}/*.h)
  add_custom_command(
    OUTPUT ${obj}
    COMMAND ${BPF_CLANG_EXECUTABLE} -g -O2 -target bpf -D__TARGET_ARCH_${LOUPE_BPF_ARCH}
            -Wall -Werror -I${LOUPE_BPF_GEN_DIR} -I${CMAKE_CURRENT_SOURCE_DIR} -c ${src} -o ${obj}
    DEPENDS ${src} ${bpf_headers} ${LOUPE_BPF_GEN_DIR}/vmlinux.h
    COMMENT "BPF ${source}"
    VERBATIM)
  add_custom_command(
    OUTPUT ${skel}
    COMMAND ${BPFTOOL_EXECUTABLE} gen skeleton ${obj} name ${name} > ${skel}.tmp
    COMMAND ${CMAKE_COMMAND} -E rename ${skel}.tmp ${skel}
    DEPENDS ${obj}
    COMMENT "Skeleton ${name}.skel.h"
    VERBATIM)
  add_custom_target(${name}_skel_gen DEPENDS ${skel})
  # Every skeleton's rule lists vmlinux.h; only the one target may generate it, or parallel
  # makes run the generator twice and race on vmlinux.h.tmp.
  add_dependencies(${name}_skel_gen loupe_vmlinux_h)
  add_library(${name}_skel INTERFACE)
  add_dependencies(${name}_skel ${name}_skel_gen)
  target_include_directories(${name}_skel INTERFACE ${LOUPE_BPF_GEN_DIR} ${CMAKE_CURRENT_SOURCE_DIR})
  target_link_libraries(${name}_skel INTERFACE PkgConfig::LIBBPF)
endfunction()
