# Package test driver, run as `cmake -DMODE=<mode> ... -P run_install_test.cmake`.
#
#   find_package  install the build into a fresh prefix, build tests/install against it
#                 with CMAKE_PREFIX_PATH, run the consumer
#   pkg_config    install likewise, compile main.cpp with `pkg-config --cflags --libs ctxpp`
#   build_tree    build tests/install against the build tree's export (ctxpp_DIR=<build>)
#   subdir        build tests/install/subdir, which add_subdirectory()s the source tree
#
# Inputs: MODE CTXPP_SOURCE_DIR CTXPP_BINARY_DIR WORK_DIR CONFIG GENERATOR MAKE_PROGRAM
#         CXX_COMPILER CXX_FLAGS EXE_LINKER_FLAGS (the last ones mirror the tested build,
#         so a sanitizer build is consumed with the same runtime).
cmake_minimum_required(VERSION 3.25)

foreach(var IN ITEMS MODE CTXPP_SOURCE_DIR CTXPP_BINARY_DIR WORK_DIR CXX_COMPILER)
  if(NOT DEFINED ${var} OR "${${var}}" STREQUAL "")
    message(FATAL_ERROR "run_install_test.cmake: -D${var}=... is required")
  endif()
endforeach()
if(NOT CONFIG)
  set(CONFIG Debug)
endif()

set(consumer_dir ${CTXPP_SOURCE_DIR}/tests/install)
set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

function(run)
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
endfunction()

function(install_build)
  run(${CMAKE_COMMAND} --install ${CTXPP_BINARY_DIR} --prefix ${prefix} --config ${CONFIG})
endfunction()

set(common_args
  -DCMAKE_BUILD_TYPE=${CONFIG}
  -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
  "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
  "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}"
  -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
  -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
if(GENERATOR)
  list(APPEND common_args -G ${GENERATOR})
endif()
if(MAKE_PROGRAM)
  list(APPEND common_args -DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()

function(configure_build_run source_dir)
  run(${CMAKE_COMMAND} -S ${source_dir} -B ${build} ${common_args} ${ARGN})
  run(${CMAKE_COMMAND} --build ${build} --config ${CONFIG})
  set(exe ${build}/ctxpp_install_consumer)
  if(NOT EXISTS ${exe} AND EXISTS ${build}/${CONFIG}/ctxpp_install_consumer)
    set(exe ${build}/${CONFIG}/ctxpp_install_consumer)
  endif()
  run(${exe})
  # Built only when the adapter was installed (see CMakeLists.txt there).
  foreach(adapter IN ITEMS sqlite postgres http prometheus asio grpc)
    foreach(candidate ${build}/ctxpp_install_${adapter}_consumer
                      ${build}/${CONFIG}/ctxpp_install_${adapter}_consumer)
      if(EXISTS ${candidate})
        run(${candidate})
        break()
      endif()
    endforeach()
  endforeach()
endfunction()

if(MODE STREQUAL "find_package")
  install_build()
  configure_build_run(${consumer_dir}
    -DCMAKE_PREFIX_PATH=${prefix}
    -DCTXPP_EXPECTED_DIR_PREFIX=${prefix})

elseif(MODE STREQUAL "build_tree")
  configure_build_run(${consumer_dir}
    -Dctxpp_DIR=${CTXPP_BINARY_DIR}
    -DCTXPP_EXPECTED_DIR_PREFIX=${CTXPP_BINARY_DIR})

elseif(MODE STREQUAL "subdir")
  configure_build_run(${consumer_dir}/subdir -DCTXPP_SOURCE_DIR=${CTXPP_SOURCE_DIR})

elseif(MODE STREQUAL "pkg_config")
  find_program(PKG_CONFIG_EXECUTABLE NAMES pkg-config pkgconf)
  if(NOT PKG_CONFIG_EXECUTABLE)
    message("CTXPP_TEST_SKIPPED: pkg-config not found")
    return()
  endif()
  install_build()
  file(GLOB_RECURSE pc_files ${prefix}/*/ctxpp.pc)
  if(NOT pc_files)
    message(FATAL_ERROR "no ctxpp.pc installed under ${prefix}")
  endif()
  list(GET pc_files 0 pc_file)
  get_filename_component(pc_dir ${pc_file} DIRECTORY)
  set(ENV{PKG_CONFIG_PATH} ${pc_dir})
  # Only our prefix: no system dirs, so a ctxpp.pc elsewhere can't be picked up.
  set(ENV{PKG_CONFIG_LIBDIR} ${pc_dir})
  execute_process(
    COMMAND ${PKG_CONFIG_EXECUTABLE} --cflags --libs ctxpp
    OUTPUT_VARIABLE pc_flags OUTPUT_STRIP_TRAILING_WHITESPACE
    COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
  message("pkg-config --cflags --libs ctxpp: ${pc_flags}")
  if(NOT pc_flags MATCHES "-I[^ ]*include" OR NOT pc_flags MATCHES "-lctxpp")
    message(FATAL_ERROR "unexpected pkg-config output: ${pc_flags}")
  endif()
  separate_arguments(pc_args UNIX_COMMAND "${pc_flags}")
  separate_arguments(cxx_args UNIX_COMMAND "${CXX_FLAGS} ${EXE_LINKER_FLAGS}")
  file(MAKE_DIRECTORY ${build})
  run(${CXX_COMPILER} -std=c++20 ${cxx_args} ${consumer_dir}/main.cpp -o ${build}/consumer
      ${pc_args})
  run(${build}/consumer)

else()
  message(FATAL_ERROR "unknown MODE '${MODE}'")
endif()

message("package test '${MODE}' passed")
