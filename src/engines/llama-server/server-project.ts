/**
 * The CMake project of the prebuilt-libs recipe: it builds `llama-server` from the bundled
 * llama.cpp source (tools/server, tools/mtmd, tools/ui, vendor/) against node-llama-cpp's prebuilt
 * ggml, llama and llama-common shared libraries instead of compiling them.
 *
 * It stands in for llama.cpp's top-level CMakeLists, so it sets what those subdirectories expect
 * of it: PROJECT_SOURCE_DIR (the llama.cpp root), the version variables, the LLAMA_* switches, and
 * targets named `ggml`, `llama`, `llama-common` (here imported libraries). Contracts it relies on:
 * - the prebuilt llama-common was built with LLAMA_SUBPROCESS (node-llama-cpp's Linux and macOS
 *   default), which changes the layout of `common_subproc`, so the server is compiled with it too;
 * - it carries cpp-httplib without OpenSSL, so the server's cpp-httplib is built the same way
 *   (LLAMA_OPENSSL=OFF) and the two copies agree;
 * - the libraries were built with GGML_BACKEND_DL: the CPU variants and GPU backends are loaded at
 *   run time from the binary's folder, so the server compiles the same for every backend.
 * The binary finds the libraries beside it (`$ORIGIN` / `@loader_path` rpath).
 */
export const SERVER_PROJECT_CMAKELISTS = `cmake_minimum_required(VERSION 3.14)
project(headroom-llama-server C CXX)

if (NOT LLAMA_SRC OR NOT LLAMA_PREBUILT_DIR)
    message(FATAL_ERROR "set LLAMA_SRC and LLAMA_PREBUILT_DIR")
endif()

set(CMAKE_CXX_STANDARD 17)
set(CMAKE_CXX_STANDARD_REQUIRED ON)
set(CMAKE_POSITION_INDEPENDENT_CODE ON)
set(BUILD_SHARED_LIBS OFF)
set(CMAKE_RUNTIME_OUTPUT_DIRECTORY \${CMAKE_BINARY_DIR}/bin)
set(CMAKE_SKIP_BUILD_RPATH FALSE)
set(CMAKE_BUILD_WITH_INSTALL_RPATH TRUE)
if (APPLE)
    set(CMAKE_INSTALL_RPATH "@loader_path")
else()
    set(CMAKE_INSTALL_RPATH "$ORIGIN")
endif()
find_package(Threads REQUIRED)

# What llama.cpp's top-level CMakeLists would set for its subdirectories.
set(PROJECT_SOURCE_DIR \${LLAMA_SRC})
file(STRINGS \${LLAMA_SRC}/CMakeLists.txt _versions REGEX "^set[(]LLAMA_VERSION_(MAJOR|MINOR|PATCH) ")
foreach(_line \${_versions})
    string(REGEX MATCH "LLAMA_VERSION_([A-Z]+) ([0-9]+)" _m "\${_line}")
    set(LLAMA_VERSION_\${CMAKE_MATCH_1} \${CMAKE_MATCH_2})
endforeach()
set(LLAMA_VERSION_BASE "\${LLAMA_VERSION_MAJOR}.\${LLAMA_VERSION_MINOR}.\${LLAMA_VERSION_PATCH}")
set(LLAMA_BUILD_NUMBER 0)
set(LLAMA_BUILD_COMMON ON)
set(LLAMA_BUILD_TOOLS OFF)
set(LLAMA_TOOLS_INSTALL OFF)
set(LLAMA_SUBPROCESS ON)

include(\${LLAMA_SRC}/cmake/license.cmake)

# llama.cpp's warning flags: not needed for a release binary.
function(llama_add_compile_flags)
endfunction()

function(headroom_import name file)
    add_library(\${name} SHARED IMPORTED GLOBAL)
    set_target_properties(\${name} PROPERTIES IMPORTED_LOCATION \${LLAMA_PREBUILT_DIR}/\${file})
endfunction()

headroom_import(ggml-base \${GGML_BASE_LIB})
set_target_properties(ggml-base PROPERTIES INTERFACE_INCLUDE_DIRECTORIES \${LLAMA_SRC}/ggml/include)
headroom_import(ggml \${GGML_LIB})
set_target_properties(ggml PROPERTIES INTERFACE_LINK_LIBRARIES ggml-base)
headroom_import(llama \${LLAMA_LIB})
set_target_properties(llama PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES \${LLAMA_SRC}/include
    INTERFACE_LINK_LIBRARIES ggml)
headroom_import(llama-common \${LLAMA_COMMON_LIB})
set_target_properties(llama-common PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES \${LLAMA_SRC}/common
    INTERFACE_COMPILE_DEFINITIONS LLAMA_SUBPROCESS
    INTERFACE_LINK_LIBRARIES "llama;vendor::nlohmann;vendor::sheredom")

add_subdirectory(\${LLAMA_SRC}/vendor vendor)
add_subdirectory(\${LLAMA_SRC}/tools/mtmd mtmd)
add_subdirectory(\${LLAMA_SRC}/tools/ui ui)
add_subdirectory(\${LLAMA_SRC}/tools/server server)
`;
