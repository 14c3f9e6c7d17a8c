/* main.c — stub; being written. */
typedef int fig_main_stub_t;
int main(void){return 0;}
