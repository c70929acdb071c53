# bench_train (bench/train_bench.cpp): the training step, AdamW and the log-mel on a CUDA device.
# CUDA builds only: it measures the device path and has nothing to say on the CPU.
# Include from bench/CMakeLists.txt:   include(${CMAKE_CURRENT_SOURCE_DIR}/train_bench.cmake)
if(VITSCUDA_HAVE_CUDA)
  add_executable(bench_train ${CMAKE_CURRENT_LIST_DIR}/train_bench.cpp)
  target_link_libraries(bench_train PRIVATE vitscuda_model CLI11::CLI11 nlohmann_json::nlohmann_json)
  target_compile_options(bench_train PRIVATE ${VITSCUDA_WARNINGS})
endif()
